// Package testutil holds the fakes qfile's tests share: a backend that
// records every vectored write, a reader that returns data in chosen
// chunks, fault injection and leak checks. Tests import it; nothing else
// does.
package testutil

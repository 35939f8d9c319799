// Package testutil holds the fakes qfile's tests share: a backend that
// records every vectored write, a reader that returns data in chosen
// chunks, fault injection and leak checks, and the gates of the long test
// matrices (Full, Scale, SkipUnlessFull: QFILE_TEST_FULL=1 runs them in
// full). Tests import it; nothing else does.
package testutil

//go:build race

package savevm_test

// raceEnabled is true under the race detector, which allocates of its
// own and so upsets allocation counts.
const raceEnabled = true

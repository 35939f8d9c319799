//go:build !race

package savevm_test

const raceEnabled = false

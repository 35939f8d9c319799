module github.com/qfile/qfile

go 1.26.0

require (
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

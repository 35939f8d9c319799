module github.com/qfile/qfile

go 1.26.0

require (
	github.com/klauspost/cpuid/v2 v2.4.2
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.44.0
)

require github.com/stretchr/testify v1.9.0 // indirect

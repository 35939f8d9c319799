package bench

import (
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/zero"
)

// Env describes the machine and the sizes a run used, for reports.
type Env struct {
	Kernel        string
	CPU           string
	LogicalCores  int
	PhysicalCores int
	// Features lists the CPU features that matter to the zero check and
	// copies.
	Features   string
	GOMAXPROCS int
	Go         string
	OS         string
	Arch       string
	// ZeroCheck is the zero.IsZero variant in use.
	ZeroCheck string
	// Sizes.
	BufSize     int
	MaxIOV      int
	BufioSize   int
	NetbufBatch int
	PageSize    int
	QueueDepth  int
	PipeMax     int
}

// Environment returns the Env of this process.
func Environment() Env {
	var feats []string
	for _, f := range []struct {
		id   cpuid.FeatureID
		name string
	}{{cpuid.SSE42, "SSE4.2"}, {cpuid.AVX2, "AVX2"}, {cpuid.AVX512F, "AVX512F"}, {cpuid.ERMS, "ERMS"}, {cpuid.FSRM, "FSRM"}, {cpuid.ASIMD, "ASIMD"}} {
		if cpuid.CPU.Supports(f.id) {
			feats = append(feats, f.name)
		}
	}
	cpu := cpuid.CPU.BrandName
	if cpu == "" {
		cpu = runtime.GOARCH
	}
	return Env{
		Kernel:        kernelRelease(),
		CPU:           cpu,
		LogicalCores:  runtime.NumCPU(),
		PhysicalCores: cpuid.CPU.PhysicalCores,
		Features:      strings.Join(feats, " "),
		GOMAXPROCS:    runtime.GOMAXPROCS(0),
		Go:            runtime.Version(),
		OS:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		ZeroCheck:     zero.Selected(),
		BufSize:       engine.BufSize,
		MaxIOV:        engine.MaxIOV,
		BufioSize:     BufioSize,
		NetbufBatch:   NetbufBatch,
		PageSize:      PageSize,
		QueueDepth:    engine.DefaultQueueDepth,
		PipeMax:       pipeMax(),
	}
}

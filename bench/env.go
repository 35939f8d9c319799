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
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	// LogicalCores is runtime.NumCPU: the CPUs this process may run on.
	LogicalCores int `json:"logical_cores"`
	// PhysicalCores is the cores CPUID reports, when that is plausible
	// (1 to LogicalCores); 0 when not known. Under a hypervisor CPUID
	// describes the host's package (254 cores on a 2-vCPU guest).
	PhysicalCores int `json:"physical_cores,omitempty"`
	// Features lists the CPU features that matter to the zero check and
	// copies.
	Features   string `json:"features"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	// ZeroCheck is the zero.IsZero variant in use.
	ZeroCheck string `json:"zero_check"`
	// Sizes.
	BufSize     int `json:"buf_size"`
	MaxIOV      int `json:"max_iov"`
	BufioSize   int `json:"bufio_size"`
	NetbufBatch int `json:"netbuf_batch"`
	PageSize    int `json:"page_size"`
	QueueDepth  int `json:"queue_depth"`
	PipeMax     int `json:"pipe_max"`
}

// plausibleCores returns physical when it can be true of a machine that
// shows logical CPUs, else 0.
func plausibleCores(physical, logical int) int {
	if physical < 1 || physical > logical {
		return 0
	}
	return physical
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
		PhysicalCores: plausibleCores(cpuid.CPU.PhysicalCores, runtime.NumCPU()),
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

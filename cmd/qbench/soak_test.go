//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSoak(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"soak", "--duration", "1500ms", "--interval", "300ms", "--sink", "pipe", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep struct {
		Samples []struct {
			Bytes int64
			GBps  float64
			RSS   int64
			FDs   int
		}
		Bytes     int64
		Backend   string
		Checked   string
		RSSGrowth int64 `json:"rss_growth"`
		FDGrowth  int   `json:"fd_growth"`
		Sampled   int64 `json:"sampled_ns"`
		Finished  int64 `json:"finished_ns"`
		Elapsed   int64 `json:"elapsed_ns"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if len(rep.Samples) < 3 || rep.Bytes <= 0 || rep.Backend == "" || !strings.Contains(rep.Checked, "crc32c") {
		t.Fatalf("report %+v", rep)
	}
	var sum int64
	for _, s := range rep.Samples {
		if s.Bytes <= 0 || s.GBps <= 0 || s.RSS <= 0 || s.FDs <= 0 {
			t.Fatalf("sample %+v", s)
		}
		sum += s.Bytes
	}
	// The soak proper is the sampled intervals, which run until
	// --duration has passed; the flush and check after them are apart.
	if rep.Sampled < int64(1500*time.Millisecond) || rep.Finished < 0 || rep.Elapsed != rep.Sampled+rep.Finished {
		t.Errorf("sampled %d ns, finished %d ns, elapsed %d ns", rep.Sampled, rep.Finished, rep.Elapsed)
	}
	if sum != rep.Bytes {
		t.Fatalf("samples add up to %d of %d bytes", sum, rep.Bytes)
	}
	if rep.FDGrowth != 0 {
		t.Fatalf("%d descriptors leaked", rep.FDGrowth)
	}
}

func TestSoakUsage(t *testing.T) {
	for _, args := range [][]string{
		{"soak", "--duration", "1s", "--interval", "1s"},
		{"soak", "--backend", "uring,syscall"},
		{"soak", "extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

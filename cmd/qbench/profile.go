package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts the CPU profile and the execution trace asked
// for; the returned stop ends them and writes the allocation profile.
// See docs/profiling.md for reading them.
func startProfiles(o *options) (stop func() error, err error) {
	var stops []func() error
	stopAll := func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		return errors.Join(errs...)
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		stops = append(stops, func() error {
			pprof.StopCPUProfile()
			return f.Close()
		})
	}
	if o.trace != "" {
		f, err := os.Create(o.trace)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("--trace: %w", err)
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			stopAll()
			return nil, fmt.Errorf("--trace: %w", err)
		}
		stops = append(stops, func() error {
			trace.Stop()
			return f.Close()
		})
	}
	if o.memprofile != "" {
		// Check the path now, not after the runs.
		f, err := os.Create(o.memprofile)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("--memprofile: %w", err)
		}
		stops = append(stops, func() error {
			// The "allocs" profile: every sampled allocation since the
			// start, with -sample_index=alloc_space or alloc_objects;
			// the in-use view after a GC is there too (inuse_space).
			runtime.GC()
			err := pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("--memprofile: %w", err)
			}
			return nil
		})
	}
	return stopAll, nil
}

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStats is what the provider process cost during a phase, read from
// /proc/<pid>: CPU seconds used in the phase and the peak RSS so far.
type ProcStats struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	PeakRSSMiB float64 `json:"peakRssMiB"`
}

// clockTicks is USER_HZ, 100 on Linux for every architecture Go supports.
const clockTicks = 100

// procCPU is the process's user + system CPU seconds so far.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64) // field 14 of stat
	stime, err2 := strconv.ParseFloat(fields[12], 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// procPeakRSS is the process's peak resident set (VmHWM) in MiB.
func procPeakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// withProc runs a provider phase and adds the provider's cost when pid is known.
func withProc(pid int, run func() (Phase, error)) (Phase, error) {
	if pid == 0 {
		return run()
	}
	before, err := procCPU(pid)
	if err != nil {
		return Phase{}, err
	}
	ph, err := run()
	if err != nil {
		return ph, err
	}
	after, err := procCPU(pid)
	if err != nil {
		return ph, err
	}
	rss, err := procPeakRSS(pid)
	if err != nil {
		return ph, err
	}
	ph.Provider = &ProcStats{CPUSeconds: after - before, PeakRSSMiB: rss}
	return ph, nil
}

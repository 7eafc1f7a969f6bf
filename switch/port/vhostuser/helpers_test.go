package vhostuser_test

import (
	"log/slog"
	"strings"
	"sync"
)

// logBuf collects a port's log lines; its goroutines write while the test reads.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(l *logBuf) *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

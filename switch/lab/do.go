package lab

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn inside the named network namespace and returns its error.
//
// fn runs on a goroutine of its own, locked to an OS thread that is switched
// into the namespace and back afterwards; the caller's goroutine and thread
// never change namespace. Sockets fn creates (net.Listen, net.Dial, raw
// sockets) stay in the namespace for their whole life, so they may be used
// after Do returns. Goroutines fn starts do not run in the namespace. A panic
// in fn is re-raised in the caller.
func Do(ns string, fn func() error) error {
	if err := checkName(ns); err != nil {
		return err
	}
	target, err := openNamed(ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := doIn(target, fn); err != nil {
		return fmt.Errorf("in namespace %s: %w", ns, err)
	}
	return nil
}

// doIn runs fn with the network namespace target; see Do.
func doIn(target netns.NsHandle, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		// A deferred send reports runtime.Goexit too: fn's callers such as
		// t.FailNow end only fn's goroutine, and the caller must not wait
		// forever for it.
		res := result{err: errGoexit}
		defer func() { done <- res }()

		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("read the current namespace: %w", err)
			return
		}
		defer origin.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("enter: %w", err)
			return
		}
		defer func() {
			if err := netns.Set(origin); err != nil {
				// The thread stays locked, so the runtime retires it when
				// this goroutine ends (the main thread is parked for good)
				// instead of reusing it in the wrong namespace.
				res.err = errors.Join(res.err, fmt.Errorf("leave: %w", err))
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if v := recover(); v != nil {
				res.panicked, res.value = true, v
			}
		}()
		res.err = fn()
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	if res.err == errGoexit {
		runtime.Goexit()
	}
	return res.err
}

// errGoexit stands for "fn called runtime.Goexit", which doIn repeats in the
// caller.
var errGoexit = errors.New("runtime.Goexit called in a lab namespace")

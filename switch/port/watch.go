package port

import (
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// LinkWatcher is the one listener for link and address changes of a network
// namespace (netlink RTNLGRP_LINK and the address groups): it tells each
// Netdev port about changes to its device, so that a device that appears,
// disappears, is replaced or gets an address is noticed at once, with no
// polling loop per port.
type LinkWatcher struct {
	mu    sync.Mutex
	ports map[*Netdev]struct{}
	// Resyncs counts the times the notifications were lost (socket overrun)
	// and every port was brought in line again from scratch.
	resyncs int
}

var (
	defaultWatcherOnce sync.Once
	defaultWatcher     *LinkWatcher
	defaultWatcherErr  error
)

// DefaultWatcher is the process's watcher, started on first use in the
// network namespace of the calling thread.
func DefaultWatcher() (*LinkWatcher, error) {
	defaultWatcherOnce.Do(func() { defaultWatcher, defaultWatcherErr = NewLinkWatcher() })
	return defaultWatcher, defaultWatcherErr
}

// NewLinkWatcher starts a watcher in the network namespace of the calling
// thread. It runs for the life of the process.
func NewLinkWatcher() (*LinkWatcher, error) {
	w := &LinkWatcher{ports: map[*Netdev]struct{}{}}
	links, addrs, err := subscribe()
	if err != nil {
		return nil, err
	}
	go w.run(links, addrs)
	return w, nil
}

func subscribe() (chan netlink.LinkUpdate, chan netlink.AddrUpdate, error) {
	links := make(chan netlink.LinkUpdate, 256)
	addrs := make(chan netlink.AddrUpdate, 256)
	if err := netlink.LinkSubscribeWithOptions(links, nil, netlink.LinkSubscribeOptions{ReceiveBufferSize: 1 << 20}); err != nil {
		return nil, nil, fmt.Errorf("watch links (netlink): %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, nil, netlink.AddrSubscribeOptions{ReceiveBufferSize: 1 << 20}); err != nil {
		return nil, nil, fmt.Errorf("watch addresses (netlink): %w", err)
	}
	return links, addrs, nil
}

func (w *LinkWatcher) run(links chan netlink.LinkUpdate, addrs chan netlink.AddrUpdate) {
	for {
		select {
		case u, ok := <-links:
			if !ok {
				links, addrs = w.resubscribe()
				continue
			}
			name, idx := u.Attrs().Name, int32(u.Attrs().Index)
			w.each(func(nd *Netdev) bool { return nd.name == name || nd.ifindex.Load() == idx || nd.seen.Load() == idx })
		case u, ok := <-addrs:
			if !ok {
				links, addrs = w.resubscribe()
				continue
			}
			idx := int32(u.LinkIndex)
			w.each(func(nd *Netdev) bool { return nd.seen.Load() == idx })
		}
	}
}

// resubscribe opens new subscriptions after one failed (an overrun socket
// drops notifications) and brings every port in line, since changes may have
// been missed.
func (w *LinkWatcher) resubscribe() (chan netlink.LinkUpdate, chan netlink.AddrUpdate) {
	for {
		links, addrs, err := subscribe()
		if err == nil {
			w.mu.Lock()
			w.resyncs++
			w.mu.Unlock()
			w.each(func(*Netdev) bool { return true })
			return links, addrs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// each syncs the ports that match, outside the watcher's lock (a port's
// Close holds its own lock and then takes the watcher's).
func (w *LinkWatcher) each(match func(*Netdev) bool) {
	w.mu.Lock()
	var todo []*Netdev
	for nd := range w.ports {
		if match(nd) {
			todo = append(todo, nd)
		}
	}
	w.mu.Unlock()
	for _, nd := range todo {
		nd.sync(false)
	}
}

func (w *LinkWatcher) add(nd *Netdev) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ports[nd] = struct{}{}
}

func (w *LinkWatcher) remove(nd *Netdev) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.ports, nd)
}

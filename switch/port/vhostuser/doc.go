// Package vhostuser serves a VM's virtio-net device over vhost-user: QEMU (the
// frontend) hands the switch (the backend) its guest memory as file
// descriptors over a unix socket, and the switch reads the frames the guest
// transmits straight out of the guest's transmit virtqueues and writes the
// frames for it straight into its receive virtqueues, with no system call and
// no kernel on the path. The protocol is QEMU's docs/interop/vhost-user.rst;
// the queues are the virtio 1.x split virtqueues.
//
// Trust: the guest is hostile, and so is everything read from its memory.
// Every descriptor's address and length is checked against the memory table
// before use, chains are walked with a bound, and a frame is copied out of
// guest memory into the switch's own buffer before anything looks at it, so a
// guest that rewrites its buffer afterwards (a double fetch) cannot change what
// was decided. A guest that breaks the ring's rules gets its device stopped
// (the connection closed, counted and logged); the frontend may connect again.
// Socket messages are validated field by field; a message that is malformed or
// unknown closes the connection.
//
// Buffers: Read copies into the caller's buffer and Write copies out of the
// caller's frame; neither keeps a reference after returning, and neither
// allocates.
package vhostuser

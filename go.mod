module github.com/sgswitch/sgswitch

go 1.26.8

require (
	github.com/armon/go-radix v1.0.0
	github.com/google/gopacket v1.1.19
	github.com/songgao/water v0.0.0-20200317203138-2b4b6d7c09d8
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sync v0.24.0
	golang.org/x/sys v0.49.0
	gopkg.in/yaml.v3 v3.0.1
)

require golang.org/x/net v0.0.0-20190620200207-3b0461eec859 // indirect

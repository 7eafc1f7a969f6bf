package lab

import "os/exec"

// Exec returns a command that runs name with args inside the network
// namespace ns, like `ip netns exec ns name args...` but without its
// remount of /sys. It goes through nsenter (util-linux), which enters the
// namespace and then execs name in place: the command's process is the
// program itself, so signals and exit status are its own, and the Go
// runtime's threads are never involved.
func Exec(ns string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath(ns), "--", name}, args...)...)
	if err := checkName(ns); err != nil {
		cmd.Err = err
	}
	return cmd
}

// fwd: the least a userspace hop between two TAPs can do — read a frame,
// write it to the other TAP, nothing else (no parsing, no policy) — to
// measure the floor of any userspace switch's latency on a machine, whatever
// its language. bench/floor/run.sh compares it with the kernel bridge and
// sgswitch. Usage: fwd MODE TAP1 TAP2, MODE 0: sleep in epoll_wait between
// frames; 1: busy-poll both TAPs with non-blocking reads.
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int opentap(const char *name) {
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror("open /dev/net/tun");
		exit(1);
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		perror("TUNSETIFF");
		exit(1);
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: fwd 0|1 TAP1 TAP2\n");
		return 2;
	}
	int spin = atoi(argv[1]);
	int fd[2] = {opentap(argv[2]), opentap(argv[3])};
	static char buf[65536];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < 2; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		if (spin) {
			for (int i = 0; i < 2; i++) {
				ssize_t n = read(fd[i], buf, sizeof buf);
				if (n > 0)
					write(fd[1 - i], buf, n);
			}
			continue;
		}
		struct epoll_event evs[2];
		int n = epoll_wait(ep, evs, 2, -1);
		for (int k = 0; k < n; k++) {
			int i = evs[k].data.u32;
			ssize_t r;
			while ((r = read(fd[i], buf, sizeof buf)) > 0)
				write(fd[1 - i], buf, r);
		}
	}
}

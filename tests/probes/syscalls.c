/* Calls each syscall named on the command line with zero arguments and prints
 * "name errno" (0 when it succeeded): run inside a container to see what its seccomp filter
 * refuses. Zero arguments make every one of these calls harmless or invalid without a filter. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct entry { const char *name; long nr; };

static const struct entry table[] = {
#define E(n) {#n, SYS_##n},
    E(mount) E(umount2) E(unshare) E(setns) E(pivot_root) E(keyctl) E(add_key)
    E(request_key) E(bpf) E(perf_event_open) E(ptrace) E(kexec_load) E(init_module)
    E(finit_module) E(delete_module) E(open_by_handle_at) E(userfaultfd) E(swapon)
    E(swapoff) E(reboot) E(settimeofday) E(clock_settime) E(getpid)
#undef E
};

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = -1;
        for (size_t j = 0; j < sizeof table / sizeof table[0]; j++)
            if (strcmp(table[j].name, argv[i]) == 0) nr = table[j].nr;
        if (nr < 0) { printf("%s unknown\n", argv[i]); continue; }
        errno = 0;
        long r = syscall(nr, 0L, 0L, 0L, 0L, 0L, 0L);
        printf("%s %d\n", argv[i], r == -1 ? errno : 0);
    }
    return 0;
}

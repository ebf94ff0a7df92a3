#ifndef PGMUX_CLIBEV_SHIM_H
#define PGMUX_CLIBEV_SHIM_H
#include <ev.h>
#include <sys/socket.h>
#include <sys/resource.h>
/* malloc_trim(): idle memory back to the kernel after bursts (not in Swift's Glibc module). */
#include <malloc.h>
/* accept4() is a GNU extension; Swift's Glibc module is built without _GNU_SOURCE. */
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

typedef void (*pgmux_io_cb)(struct ev_loop *loop, ev_io *w, int revents);
typedef void (*pgmux_timer_cb)(struct ev_loop *loop, ev_timer *w, int revents);
typedef void (*pgmux_signal_cb)(struct ev_loop *loop, ev_signal *w, int revents);
typedef void (*pgmux_check_cb)(struct ev_loop *loop, ev_check *w, int revents);
typedef void (*pgmux_async_cb)(struct ev_loop *loop, ev_async *w, int revents);

/* libev's initialisers are macros: wrap them so Swift can call them. */
static inline void pgmux_ev_io_init(ev_io *w, pgmux_io_cb cb, int fd, int events, void *data) {
  ev_io_init(w, cb, fd, events); w->data = data; }
static inline void pgmux_ev_io_set(ev_io *w, int fd, int events) { ev_io_set(w, fd, events); }
static inline void pgmux_ev_timer_init(ev_timer *w, pgmux_timer_cb cb, ev_tstamp after, ev_tstamp repeat, void *data) {
  ev_timer_init(w, cb, after, repeat); w->data = data; }
static inline void pgmux_ev_signal_init(ev_signal *w, pgmux_signal_cb cb, int signum, void *data) {
  ev_signal_init(w, cb, signum); w->data = data; }
static inline void pgmux_ev_check_init(ev_check *w, pgmux_check_cb cb, void *data) {
  ev_check_init(w, cb); w->data = data; }
static inline void pgmux_ev_async_init(ev_async *w, pgmux_async_cb cb, void *data) {
  ev_async_init(w, cb); w->data = data; }
/* struct ucred needs _GNU_SOURCE; this mirrors its layout for SO_PEERCRED (peer auth). */
struct pgmux_ucred { int pid; unsigned int uid; unsigned int gid; };
static inline int pgmux_peer_uid(int fd, unsigned int *uid) {
  struct pgmux_ucred c; socklen_t len = sizeof c;
  int r = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len);
  if (r == 0) *uid = c.uid;
  return r; }
/* recv() and send() of the relay without glibc's cancellation-point wrapper: once a process has
   a second thread (a crypto worker, another event loop) every such call brackets its syscall
   with __pthread_enable_asynccancel / __pthread_disable_asynccancel (1-2% of pgmux's CPU under
   pgbench). pgmux never cancels a thread, so the bracket buys nothing. -1 and errno as usual. */
#include <sys/syscall.h>
#include <unistd.h>
static inline ssize_t pgmux_recv(int fd, void *buf, size_t len, int flags) {
  return syscall(SYS_recvfrom, fd, buf, len, flags, (void *)0, (void *)0); }
static inline ssize_t pgmux_send(int fd, const void *buf, size_t len, int flags) {
  return syscall(SYS_sendto, fd, buf, len, flags, (void *)0, 0); }
static inline void pgmux_ev_set_max_priority(void *w) { ev_set_priority((ev_watcher *)w, EV_MAXPRI); }
static inline int pgmux_ev_is_active(const void *w) { return ev_is_active((const ev_watcher *)w); }
#endif

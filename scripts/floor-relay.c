/*
 * floor-relay: the least work any pooler can do per message, as a reference for `make bench --floor`.
 *
 *   floor-relay LISTEN_PORT SERVER_PORT      (both on 127.0.0.1)
 *
 * Each accepted client gets its own TCP connection to the server (no pooling, no parsing, no auth:
 * the client logs in to PostgreSQL end to end). One epoll loop; a readable socket costs one recv and
 * one send to its peer, the minimum any relay pays for a message. Its CPU per transaction is therefore
 * a floor under pgmux's and PgBouncer's on the same machine: what is left above it is the pooler's own
 * work. Sends block (benchmark traffic is small request/response); not for production use.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_FD = 1 << 16 };
static int peer_of[MAX_FD];
static char buffer[1 << 16];

static void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int watch(int ep, int fd) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void close_pair(int fd) {
    int peer = peer_of[fd];
    peer_of[fd] = -1;
    close(fd);
    if (peer >= 0) {
        peer_of[peer] = -1;
        close(peer);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor-relay LISTEN_PORT SERVER_PORT\n");
        return 2;
    }
    struct sockaddr_in listen_addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in server_addr = listen_addr;
    server_addr.sin_port = htons(atoi(argv[2]));

    int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&listen_addr, sizeof listen_addr) || listen(listener, 4096)) {
        perror("floor-relay: bind/listen");
        return 1;
    }
    for (int fd = 0; fd < MAX_FD; fd++) peer_of[fd] = -1;
    int ep = epoll_create1(0);
    watch(ep, listener);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = accept(listener, NULL, NULL);
                if (client < 0) continue;
                int server = socket(AF_INET, SOCK_STREAM, 0);
                if (client >= MAX_FD || server < 0 || server >= MAX_FD ||
                    connect(server, (struct sockaddr *)&server_addr, sizeof server_addr)) {
                    close(client);
                    if (server >= 0) close(server);
                    continue;
                }
                no_delay(client);
                no_delay(server);
                peer_of[client] = server;
                peer_of[server] = client;
                if (watch(ep, client) || watch(ep, server)) {
                    close(client);
                    close(server);
                }
                continue;
            }
            if (peer_of[fd] < 0) continue; /* closed earlier in this batch */
            /* MSG_DONTWAIT: an event left over from a closed pair may name a reused descriptor */
            ssize_t got = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
            if (got <= 0) {
                close_pair(fd);
                continue;
            }
            for (ssize_t sent = 0; sent < got;) {
                ssize_t w = send(peer_of[fd], buffer + sent, (size_t)(got - sent), MSG_NOSIGNAL);
                if (w <= 0) {
                    close_pair(fd);
                    break;
                }
                sent += w;
            }
        }
    }
}

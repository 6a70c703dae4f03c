/* The floor a proxy's bulk path can reach on this machine, for `bench_proxy_floors` only: a TCP proxy in C
 * with nothing but the copy, a thread per direction of each connection.
 *
 *   floor_proxy copy|splice LISTEN_PORT UPSTREAM_PORT     (both on 127.0.0.1)
 *
 * copy:   read() into a 1 MiB buffer, write() it out (what K2's fast path does, without the interpreter).
 * splice: socket -> pipe -> socket with splice(), no copy through user space.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 20)

struct direction {
    int from, to, splice;
};

static void copy_until_eof(int from, int to) {
    char *buffer = malloc(CHUNK);
    for (ssize_t n; buffer && (n = read(from, buffer, CHUNK)) > 0;)
        for (ssize_t done = 0, w; done < n; done += w)
            if ((w = write(to, buffer + done, n - done)) <= 0) goto out;
out:
    free(buffer);
}

static void splice_until_eof(int from, int to) {
    int pipe_fds[2];
    if (pipe(pipe_fds)) return;
    fcntl(pipe_fds[1], F_SETPIPE_SZ, CHUNK);
    for (ssize_t n; (n = splice(from, NULL, pipe_fds[1], NULL, CHUNK, SPLICE_F_MOVE)) > 0;)
        for (ssize_t done = 0, w; done < n; done += w)
            if ((w = splice(pipe_fds[0], NULL, to, NULL, n - done, SPLICE_F_MOVE)) <= 0) goto out;
out:
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

static void *run(void *arg) {
    struct direction *d = arg;
    (d->splice ? splice_until_eof : copy_until_eof)(d->from, d->to);
    shutdown(d->to, SHUT_WR);
    return NULL;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "copy") && strcmp(argv[1], "splice"))) {
        fprintf(stderr, "usage: %s copy|splice LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
        return 2;
    }
    int use_splice = !strcmp(argv[1], "splice"), one = 1;
    struct sockaddr_in here = loopback(atoi(argv[2])), upstream = loopback(atoi(argv[3]));
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&here, sizeof here) || listen(listener, 128)) {
        perror("floor_proxy: listen");
        return 1;
    }
    for (;;) {
        int client = accept(listener, NULL, NULL), server = socket(AF_INET, SOCK_STREAM, 0);
        if (client < 0 || connect(server, (struct sockaddr *)&upstream, sizeof upstream)) {
            close(client);
            close(server);
            continue;
        }
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct direction *up = malloc(sizeof *up), *down = malloc(sizeof *down);
        *up = (struct direction){client, server, use_splice};
        *down = (struct direction){server, client, use_splice};
        pthread_t thread;
        pthread_create(&thread, NULL, run, up);
        pthread_detach(thread);
        pthread_create(&thread, NULL, run, down);
        pthread_detach(thread);
    }
}

/* netaddr: address classification for admission rules. */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>

/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and unix sockets. */
bool netaddr_is_loopback(const struct sockaddr *sa);

// Whether a process holds a file open for writing, asked of the kernel with
// a read lease (fcntl(2), F_SETLEASE with F_RDLCK): Linux refuses a read
// lease with EAGAIN while any descriptor of the file is open for writing,
// in any process. Leases need a local file system and the file's owner or
// CAP_LEASE; where they cannot be taken the answer is kUnknown and the
// caller falls back to a quiet period (see watcher.h).
//
// While the lease is held, a process that opens the file for writing (or
// truncates it) waits until the lease is released (at most
// /proc/sys/fs/lease-break-time), so a read done under the lease sees one
// consistent content. The kernel signals the holder (SIGIO) when that
// happens; TakeReadLease makes the process ignore SIGIO once, since nothing
// in dispatchd uses signal-driven I/O and the default action would end it.
#ifndef DISPATCHD_AGENT_OPEN_WRITERS_H_
#define DISPATCHD_AGENT_OPEN_WRITERS_H_

namespace dispatchd::agent {

enum class Writers {
  kNone,     // no writer: the read lease is now held on the descriptor
  kOpen,     // some process has the file open for writing
  kUnknown,  // leases are not available here (errno in *error)
};

// `fd` is a read-only descriptor of a regular file. On kNone the lease is
// held until ReleaseLease(fd) or the descriptor is closed.
Writers TakeReadLease(int fd, int* error = nullptr);
void ReleaseLease(int fd);

}  // namespace dispatchd::agent

#endif  // DISPATCHD_AGENT_OPEN_WRITERS_H_

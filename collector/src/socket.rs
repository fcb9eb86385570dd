//! Socket receive buffers for bots that take bursts (ICMP replies, NetFlow datagrams): one way
//! to ask for a large buffer and to say when the system gave less.

use std::os::fd::{AsFd, AsRawFd, RawFd};

/// Asks for `wanted` bytes of receive buffer on `socket`: first past `net.core.rmem_max`
/// (`SO_RCVBUFFORCE`, needs CAP_NET_ADMIN), else up to it. Returns what the kernel granted for
/// payload, half of what it reports (it doubles a request for its bookkeeping), and warns,
/// naming `what` (e.g. "ICMP socket"), when that is less than asked.
pub fn raise_receive_buffer(socket: &impl AsFd, wanted: usize, what: &str) -> usize {
    let socket = socket2::SockRef::from(socket);
    let request = libc::c_int::try_from(wanted).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a valid descriptor with a pointer to a c_int and its size.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&request as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket.set_recv_buffer_size(request as usize);
    }
    let granted = socket.recv_buffer_size().map_or(0, |reported| reported / 2);
    if granted < wanted {
        tracing::warn!(
            wanted,
            granted,
            "the {what} receive buffer is smaller than asked; bursts may be dropped. Raise \
             `net.core.rmem_max` or grant CAP_NET_ADMIN"
        );
    }
    granted
}

/// Receives a batch of datagrams with `recvmmsg(2)` into `headers` without blocking: how many
/// arrived, `Ok(0)` when none is waiting; a call interrupted by a signal is retried.
///
/// # Safety
///
/// Every header must point at valid buffers (iovecs, address and control space) of the lengths
/// it states, owned by the caller for the duration of the call.
pub unsafe fn receive_batch(fd: RawFd, headers: &mut [libc::mmsghdr]) -> std::io::Result<usize> {
    let count = libc::c_uint::try_from(headers.len()).unwrap_or(libc::c_uint::MAX);
    loop {
        // SAFETY: the caller guarantees that the headers describe valid buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                count,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock => return Ok(0),
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_within_rmem_max_is_granted_and_reported_as_payload() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let granted = raise_receive_buffer(&socket, 64 * 1024, "test socket");
        assert_eq!(granted, 64 * 1024);
        let more = raise_receive_buffer(&socket, 128 * 1024, "test socket");
        assert_eq!(more, 128 * 1024);
    }
}

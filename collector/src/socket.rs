//! Receiving bursts of datagrams (ICMP replies, NetFlow exports): one way to ask for a large
//! socket buffer and to say when the system gave less, and one `recvmmsg(2)` batch that takes
//! many datagrams a system call.

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Buffers for `recvmmsg(2)`, allocated once: `count` slots of `slot` bytes, each with room
/// for its source address and `control` bytes of control messages. The message headers point
/// into the other vectors, which are never resized after construction.
pub struct ReceiveBatch {
    slot: usize,
    control_bytes: usize,
    buffers: Vec<u8>,
    /// u64 words: control messages must be aligned.
    control: Vec<u64>,
    iovecs: Vec<libc::iovec>,
    addresses: Vec<libc::sockaddr_storage>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the headers point only into the batch's own heap buffers, which
// move with it; nothing else holds them.
unsafe impl Send for ReceiveBatch {}

impl ReceiveBatch {
    /// `count` datagrams of up to `slot` bytes a call, each with `control` bytes (rounded up to
    /// whole 8-byte words) of control-message space.
    pub fn new(count: usize, slot: usize, control: usize) -> ReceiveBatch {
        let control_words = control.div_ceil(size_of::<u64>());
        let mut batch = ReceiveBatch {
            slot,
            control_bytes: control_words * size_of::<u64>(),
            buffers: vec![0u8; count * slot],
            control: vec![0u64; count * control_words],
            iovecs: Vec::with_capacity(count),
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            addresses: vec![unsafe { zeroed() }; count],
            headers: Vec::with_capacity(count),
        };
        let base = batch.buffers.as_mut_ptr();
        for i in 0..count {
            batch.iovecs.push(libc::iovec {
                // SAFETY: i * slot is within the count * slot buffer.
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            });
        }
        let control_base = batch.control.as_mut_ptr();
        for i in 0..count {
            // SAFETY: mmsghdr is plain data; all-zero is a valid value.
            let mut header: libc::mmsghdr = unsafe { zeroed() };
            header.msg_hdr.msg_iov = &mut batch.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_name =
                (&mut batch.addresses[i] as *mut libc::sockaddr_storage).cast();
            if control_words > 0 {
                // SAFETY: i * control_words is within the control buffer.
                header.msg_hdr.msg_control = unsafe { control_base.add(i * control_words) }.cast();
            }
            batch.headers.push(header);
        }
        batch
    }

    /// Receives as many datagrams as the batch holds, without blocking: how many arrived,
    /// `Ok(0)` when none is waiting; a call interrupted by a signal is retried.
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        for header in &mut self.headers {
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = self.control_bytes as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        let count = libc::c_uint::try_from(self.headers.len()).unwrap_or(libc::c_uint::MAX);
        loop {
            // SAFETY: every header points at this batch's own iovec, address and control
            // buffers, with their lengths set above.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
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

    /// The bytes of datagram `i` of the last [`ReceiveBatch::receive`].
    pub fn data(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(self.slot);
        &self.buffers[i * self.slot..i * self.slot + len]
    }

    /// Where datagram `i` came from.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        source_address(&self.addresses[i])
    }

    /// Datagram `i`'s message header, for its control messages.
    pub fn header(&self, i: usize) -> &libc::msghdr {
        &self.headers[i].msg_hdr
    }

    /// Datagram `i` or its control messages did not fit their buffers.
    pub fn truncated(&self, i: usize) -> bool {
        self.headers[i].msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0
    }
}

/// The IP address of a socket address the kernel wrote (IPv4 or IPv6; `None` for others).
pub fn source_address(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
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

    #[test]
    fn a_batch_receives_waiting_datagrams_with_their_sources_and_marks_truncation() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sender = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind");
        let mut batch = ReceiveBatch::new(4, 8, 0);
        assert_eq!(batch.receive(receiver.as_raw_fd()).expect("receive"), 0);
        let to = receiver.local_addr().expect("address");
        sender.send_to(b"short", to).expect("send");
        sender.send_to(b"longer than eight", to).expect("send");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(batch.receive(receiver.as_raw_fd()).expect("receive"), 2);
        assert_eq!(batch.data(0), b"short");
        assert!(!batch.truncated(0));
        assert_eq!(batch.data(1), b"longer t");
        assert!(batch.truncated(1));
        assert_eq!(
            batch.source(1),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
    }
}

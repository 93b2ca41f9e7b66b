//! The original destination of a connection that the capture rules
//! (`remora-proxy init`: nat REDIRECT to 15001 or 15006) sent to this
//! proxy: what the app (or the remote client) connected to before the
//! redirect, read from conntrack with `SO_ORIGINAL_DST` (IPv4) or
//! `IP6T_SO_ORIGINAL_DST` (IPv6).
//!
//! A connection that was not redirected (an app using 15001 explicitly, a
//! peer proxy dialling 15006) has no such destination, or one equal to the
//! socket's local address: [`captured`] says `None` and the listener keeps
//! its explicit behaviour. This costs one `getsockopt` per accepted
//! connection and nothing per request.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use tokio::net::TcpStream;

/// Where a captured connection was going, when it was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OriginalDst(pub SocketAddr);

/// The original destination of `stream` if the capture rules redirected it
/// to this listener; `None` for a connection made to the listener itself.
pub(crate) fn captured(stream: &TcpStream) -> Option<OriginalDst> {
    captured_at(stream, None)
}

/// [`captured`], for a connection accepted by a listener bound to
/// `listener`: when that is a specific address, it is the connection's
/// local address too, and the `getsockname` is saved.
pub(crate) fn captured_at(stream: &TcpStream, listener: Option<SocketAddr>) -> Option<OriginalDst> {
    let local = match listener {
        Some(addr) if !addr.ip().is_unspecified() => addr,
        _ => stream.local_addr().ok()?,
    };
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: their
    // conntrack entry is IPv4's, asked for with the IPv4 option.
    let ipv6 = match local {
        SocketAddr::V4(_) => false,
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_none(),
    };
    let original = sys::original_dst(stream, ipv6)?;
    redirected(local, original).then_some(OriginalDst(original))
}

/// Whether `original` differs from where the connection arrived: a
/// connection without nat has conntrack's original tuple equal to its own.
fn redirected(local: SocketAddr, original: SocketAddr) -> bool {
    let same_ip = match (local.ip(), original.ip()) {
        (a, b) if a == b => true,
        // A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d.
        (std::net::IpAddr::V6(a), b) => a.to_ipv4_mapped().map(std::net::IpAddr::V4) == Some(b),
        _ => false,
    };
    !(same_ip && local.port() == original.port())
}

#[cfg(target_os = "linux")]
mod sys {
    // The one place the proxy calls into libc itself: `getsockopt` with a
    // netfilter option has no safe wrapper in std, tokio or socket2.
    #![allow(unsafe_code)]

    use std::mem::{MaybeUninit, size_of};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use super::{from_sockaddr_in, from_sockaddr_in6};

    /// Reads the nat original destination; `None` when the kernel has none
    /// (no conntrack entry: `ENOENT`) or the call fails otherwise.
    pub(super) fn original_dst(stream: &impl AsRawFd, ipv6: bool) -> Option<SocketAddr> {
        let fd = stream.as_raw_fd();
        if ipv6 {
            let mut addr = MaybeUninit::<libc::sockaddr_in6>::zeroed();
            let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: `addr` is a writable sockaddr_in6 of `len` bytes that
            // outlives the call; the kernel writes at most `len` bytes and
            // sets `len` to what it wrote. `fd` is a socket this process
            // owns for the duration of the call (borrowed from `stream`).
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_IPV6,
                    libc::IP6T_SO_ORIGINAL_DST,
                    addr.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if rc != 0 || len as usize != size_of::<libc::sockaddr_in6>() {
                return None;
            }
            // SAFETY: the kernel filled all of it (checked `len` above), and
            // it started zeroed, so every byte is initialised.
            let addr = unsafe { addr.assume_init() };
            if i32::from(addr.sin6_family) != libc::AF_INET6 {
                return None;
            }
            Some(from_sockaddr_in6(
                addr.sin6_addr.s6_addr,
                u16::from_be(addr.sin6_port),
            ))
        } else {
            let mut addr = MaybeUninit::<libc::sockaddr_in>::zeroed();
            let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: as above, for a sockaddr_in.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_IP,
                    libc::SO_ORIGINAL_DST,
                    addr.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if rc != 0 || len as usize != size_of::<libc::sockaddr_in>() {
                return None;
            }
            // SAFETY: zeroed, then filled by the kernel.
            let addr = unsafe { addr.assume_init() };
            if i32::from(addr.sin_family) != libc::AF_INET {
                return None;
            }
            Some(from_sockaddr_in(
                u32::from_be(addr.sin_addr.s_addr),
                u16::from_be(addr.sin_port),
            ))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::net::SocketAddr;

    /// Capture is netfilter's: elsewhere nothing is ever redirected.
    pub(super) fn original_dst<T>(_: &T, _: bool) -> Option<SocketAddr> {
        None
    }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // used by the Linux `sys` only
fn from_sockaddr_in(ip: u32, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // used by the Linux `sys` only
fn from_sockaddr_in6(ip: [u8; 16], port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
}

#[cfg(test)]
mod tests;

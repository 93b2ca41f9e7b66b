//! A `Snapshot` encoded once and sent to many proxies.
//!
//! The control plane builds one snapshot per view (the proxies of one
//! namespace and labels) and encodes its large parts once: every stream of
//! that view sends the same bytes, adding only its own `nonce`. Protobuf
//! lets a message be written as the concatenation of its encoded fields, in
//! any order, so the proxies decode an [`EncodedSnapshot`] as the
//! [`crate::pb::Snapshot`] it is. The control plane writes it to the wire
//! as a gRPC message whose chunks are the shared parts
//! ([`EncodedSnapshot::grpc_message`]).

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType, encoded_len_varint, key_len};

/// `Snapshot.version` (field 1) and `Snapshot.nonce` (field 2).
const VERSION_TAG: u32 = 1;
const NONCE_TAG: u32 = 2;

/// A snapshot as sent: its version, its other fields already encoded (in
/// parts that several snapshots may share), and this push's nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedSnapshot {
    /// `Snapshot.version`.
    pub version: String,
    /// The encoded fields after `nonce` (`virtual_hosts` to `mesh`),
    /// concatenated in this order.
    pub parts: Vec<Bytes>,
    /// `Snapshot.nonce`.
    pub nonce: String,
}

impl EncodedSnapshot {
    /// The length of `parts`.
    pub fn parts_len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// The snapshot as one uncompressed gRPC message (the 5-byte prefix,
    /// then the message), in chunks: the prefix with `version` and `nonce`,
    /// then `parts` themselves, shared, not copied.
    pub fn grpc_message(&self) -> Vec<Bytes> {
        use prost::Message as _;
        let len = self.encoded_len();
        let mut head = Vec::with_capacity(5 + len - self.parts_len());
        head.push(0); // not compressed
        head.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        if !self.version.is_empty() {
            prost::encoding::string::encode(VERSION_TAG, &self.version, &mut head);
        }
        if !self.nonce.is_empty() {
            prost::encoding::string::encode(NONCE_TAG, &self.nonce, &mut head);
        }
        let mut chunks = Vec::with_capacity(1 + self.parts.len());
        chunks.push(Bytes::from(head));
        chunks.extend(self.parts.iter().filter(|p| !p.is_empty()).cloned());
        chunks
    }
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
    }
}

impl prost::Message for EncodedSnapshot {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.version.is_empty() {
            prost::encoding::string::encode(VERSION_TAG, &self.version, buf);
        }
        if !self.nonce.is_empty() {
            prost::encoding::string::encode(NONCE_TAG, &self.nonce, buf);
        }
        for part in &self.parts {
            buf.put_slice(part);
        }
    }

    /// Only the control plane sends these; nobody decodes one. Decoding
    /// keeps `version` and `nonce` and skips the rest.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            VERSION_TAG => prost::encoding::string::merge(wire_type, &mut self.version, buf, ctx),
            NONCE_TAG => prost::encoding::string::merge(wire_type, &mut self.nonce, buf, ctx),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        string_len(VERSION_TAG, &self.version)
            + string_len(NONCE_TAG, &self.nonce)
            + self.parts_len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests;

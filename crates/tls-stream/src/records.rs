//! The synchronous half of the TLS stream: rustls' unbuffered state machine
//! (`process_tls_records`) driven over buffers this crate owns. Ciphertext from the
//! socket waits in `incoming` until rustls discards it, the records rustls encodes
//! or encrypts are appended to `outgoing`, and plaintext decrypted beyond what a
//! caller's buffer took waits in `plaintext`. Nothing here awaits: the stream
//! (stream.rs) moves bytes between these buffers and the socket, so each buffer can
//! be freed whenever it is empty.

use std::mem::MaybeUninit;
use std::ops::DerefMut;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, ReadTraffic, UnbufferedConnectionCommon,
    UnbufferedStatus,
};

/// An unbuffered rustls connection, server or client: what [`crate::TlsStream`]
/// drives. Through `Deref` it reads as rustls' `CommonState` (protocol version,
/// ALPN, peer certificates, handshake kind).
pub trait UnbufferedConnection: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> {
    /// rustls' side data (`ServerConnectionData` or `ClientConnectionData`).
    type Data;

    /// `process_tls_records` of this side: processes the records in `incoming_tls`
    /// until there is something for the caller to do (rustls `unbuffered` module).
    fn process<'c, 'i>(
        &'c mut self,
        incoming_tls: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl UnbufferedConnection for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn process<'c, 'i>(
        &'c mut self,
        incoming_tls: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        (**self).process_tls_records(incoming_tls)
    }
}

impl UnbufferedConnection for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn process<'c, 'i>(
        &'c mut self,
        incoming_tls: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        (**self).process_tls_records(incoming_tls)
    }
}

/// What a call to [`Records::pump`] is for.
pub(crate) enum Want<'a> {
    /// Plaintext into this buffer (not necessarily initialized).
    Read(&'a mut [MaybeUninit<u8>]),
    /// Nothing but progress: process every complete record, keeping what decrypts
    /// to plaintext in `plaintext` (the handshake, a readiness check).
    Progress,
    /// These bytes encrypted into `outgoing`.
    Encrypt(&'a [u8]),
    /// A close_notify alert into `outgoing`.
    CloseNotify,
}

/// Where [`Records::pump`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// `Want::Read`: this many plaintext bytes are in the caller's buffer (0: none
    /// yet, more ciphertext is needed or the peer closed).
    Read(usize),
    /// `Want::Encrypt` or `Want::CloseNotify` is done.
    Done,
    /// rustls needs more ciphertext before it can go on (the handshake is not
    /// complete), or had nothing to do for a `Want::Progress`.
    Blocked,
    /// Both sides sent close_notify: nothing more can be sent.
    Closed,
}

/// One step of the pump's loop: go on, or stop with this result.
enum Step {
    Continue,
    Stop(Pumped),
    Fail(rustls::Error),
}

/// A rustls connection with its ciphertext and plaintext buffers.
pub(crate) struct Records<C> {
    pub(crate) conn: C,
    /// Ciphertext received; `incoming[in_start..]` is not discarded by rustls yet
    /// (records not processed, or a handshake message still being joined).
    pub(crate) incoming: Vec<u8>,
    pub(crate) in_start: usize,
    /// Decrypted bytes no read has taken yet: `plaintext[plain_pos..]`.
    plaintext: Vec<u8>,
    plain_pos: usize,
    /// Records encoded or encrypted, not yet handed to the socket.
    pub(crate) outgoing: Vec<u8>,
    /// rustls holds decrypted records a read left (its buffer was full).
    rustls_plaintext: bool,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// The connection failed: every later read and write reports it.
    error: Option<rustls::Error>,
}

impl<C: UnbufferedConnection> Records<C> {
    pub(crate) fn new(conn: C) -> Self {
        Records {
            conn,
            incoming: Vec::new(),
            in_start: 0,
            plaintext: Vec::new(),
            plain_pos: 0,
            outgoing: Vec::new(),
            rustls_plaintext: false,
            peer_closed: false,
            error: None,
        }
    }

    /// Reads plaintext into `dst`: what an earlier call decrypted and kept first,
    /// else what the complete records in `incoming` decrypt to. `Ok(0)`: nothing
    /// yet (see [`Records::peer_closed`]). A failure is reported once the plaintext
    /// that came before it is read.
    pub(crate) fn read(&mut self, dst: &mut [MaybeUninit<u8>]) -> Result<usize, rustls::Error> {
        if self.plain_pos < self.plaintext.len() {
            let n = copy_into(dst, &self.plaintext[self.plain_pos..]);
            self.plain_pos += n;
            if self.plain_pos == self.plaintext.len() {
                self.plaintext.clear();
                self.plain_pos = 0;
            }
            return Ok(n);
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.pump(Want::Read(dst))? {
            Pumped::Read(n) => Ok(n),
            _ => Ok(0),
        }
    }

    /// The peer sent close_notify (its plaintext may still be waiting to be read).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The failure that ended the connection, if it failed.
    pub(crate) fn error(&self) -> Option<&rustls::Error> {
        self.error.as_ref()
    }

    /// Input no read has taken: ciphertext not yet processed, plaintext kept, the
    /// peer's close_notify, or a failure to report.
    pub(crate) fn has_unread_input(&self) -> bool {
        self.in_start < self.incoming.len()
            || self.plain_pos < self.plaintext.len()
            || self.rustls_plaintext
            || self.peer_closed
            || self.error.is_some()
    }

    /// Processes every complete record received, then says whether a read would
    /// find something at once (plaintext, the peer's close, a failure) or a record
    /// waits to be sent (e.g. a TLS 1.2 renegotiation's refusal).
    pub(crate) fn ready(&mut self) -> bool {
        if self.error.is_none() {
            let _ = self.pump(Want::Progress);
        }
        self.plain_pos < self.plaintext.len()
            || self.peer_closed
            || self.error.is_some()
            || !self.outgoing.is_empty()
    }

    /// Frees every buffer that holds nothing (the next read or write allocates
    /// again); one that holds bytes shrinks to them.
    pub(crate) fn release_buffers(&mut self) {
        self.compact();
        shrink(&mut self.incoming);
        if self.plain_pos == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.plain_pos = 0;
        }
        shrink(&mut self.outgoing);
    }

    /// rustls keeps no part of `incoming`: it is empty, or starts with a record not
    /// complete yet (rustls processes complete records only, and keeps the records
    /// of a handshake message it is joining at the front), so a socket read may
    /// take it while rustls is handed an empty slice.
    pub(crate) fn incoming_unclaimed(&self) -> bool {
        let pending = &self.incoming[self.in_start..];
        match pending {
            [] => true,
            [_, _, _, hi, lo, ..] => {
                pending.len() < 5 + usize::from(u16::from_be_bytes([*hi, *lo]))
            }
            _ => true,
        }
    }

    /// Drops the ciphertext rustls discarded from the front of `incoming`.
    pub(crate) fn compact(&mut self) {
        if self.in_start > 0 {
            self.incoming.drain(..self.in_start);
            self.in_start = 0;
        }
    }

    /// Drives rustls until `want` is met or it needs more ciphertext: records it
    /// has to send (handshake flights, alerts, session tickets, a refusal) are
    /// appended to `outgoing` on the way, plaintext that `want` does not take is
    /// kept in `plaintext`, and the ciphertext rustls is done with is discarded.
    ///
    /// A rustls error is kept (every later call reports it) and the alert rustls
    /// queued for the peer is appended to `outgoing`.
    pub(crate) fn pump(&mut self, mut want: Want<'_>) -> Result<Pumped, rustls::Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut read = 0;
        loop {
            let start = self.in_start;
            let UnbufferedStatus { mut discard, state } =
                self.conn.process(&mut self.incoming[start..]);
            let step = match state {
                Err(e) => Step::Fail(e),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let dst = match &mut want {
                        Want::Read(dst) => Some(&mut **dst),
                        _ => None,
                    };
                    let room = dst.as_ref().map(|d| d.len());
                    let (more, failed) =
                        take_records(&mut traffic, dst, &mut read, &mut self.plaintext);
                    discard += more;
                    // Once the caller's buffer is full, later records wait in rustls.
                    self.rustls_plaintext = traffic.peek_len().is_some();
                    match failed {
                        Some(e) => Step::Fail(e),
                        None if room == Some(read) => Step::Stop(Pumped::Read(read)),
                        None => Step::Continue,
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    match append(&mut self.outgoing, |out| encode.encode(out), encode_room) {
                        Ok(_) => Step::Continue,
                        Err(e) => Step::Fail(rustls::Error::General(e.to_string())),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The records are in `outgoing`, which the stream sends in order.
                    transmit.done();
                    Step::Continue
                }
                Ok(ConnectionState::BlockedHandshake) => Step::Stop(Pumped::Blocked),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match &want {
                    Want::Encrypt(data) => {
                        match append(
                            &mut self.outgoing,
                            |out| traffic.encrypt(data, out),
                            encrypt_room,
                        ) {
                            Ok(_) => Step::Stop(Pumped::Done),
                            Err(e) => Step::Fail(encrypt_error(e)),
                        }
                    }
                    Want::CloseNotify => {
                        match append(
                            &mut self.outgoing,
                            |out| traffic.queue_close_notify(out),
                            encrypt_room,
                        ) {
                            Ok(_) => Step::Stop(Pumped::Done),
                            Err(e) => Step::Fail(encrypt_error(e)),
                        }
                    }
                    Want::Read(_) => Step::Stop(Pumped::Read(read)),
                    Want::Progress => Step::Stop(Pumped::Blocked),
                },
                Ok(ConnectionState::PeerClosed) => {
                    // Said once; what follows is WriteTraffic or Closed.
                    self.peer_closed = true;
                    Step::Continue
                }
                Ok(ConnectionState::Closed) => Step::Stop(match want {
                    Want::Read(_) => Pumped::Read(read),
                    _ => Pumped::Closed,
                }),
                // Early data is never enabled (`max_early_data_size` stays 0).
                Ok(_) => Step::Fail(rustls::Error::General(
                    "unexpected TLS state (early data)".into(),
                )),
            };
            self.discard(discard);
            match step {
                Step::Continue => {}
                Step::Stop(pumped) => return Ok(pumped),
                Step::Fail(e) => {
                    self.fail(e.clone());
                    if read > 0 {
                        // The plaintext before the failure first; the failure next.
                        return Ok(Pumped::Read(read));
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Removes `discard` bytes from the front of what rustls has not discarded.
    fn discard(&mut self, discard: usize) {
        self.in_start += discard;
        if self.in_start >= self.incoming.len() {
            self.incoming.clear();
            self.in_start = 0;
        }
    }

    /// Keeps `e` for every later call, appends the alert rustls queued for the peer
    /// (if any) to `outgoing`, and drops the ciphertext received: rustls is never
    /// called on it again (a record that failed to decrypt would fail again, and
    /// rustls sends one fatal alert only).
    fn fail(&mut self, e: rustls::Error) {
        self.error = Some(e);
        // While rustls has records queued it hands them out (after any plaintext it
        // holds) before it looks at the input again.
        while self.conn.wants_write() {
            let start = self.in_start;
            let UnbufferedStatus { state, .. } = self.conn.process(&mut self.incoming[start..]);
            let more = match state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(Ok(_)) = traffic.next_record() {}
                    true
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    append(&mut self.outgoing, |out| encode.encode(out), encode_room).is_ok()
                }
                _ => false,
            };
            if !more {
                break;
            }
        }
        self.incoming = Vec::new();
        self.in_start = 0;
        self.rustls_plaintext = false;
    }
}

/// Takes the decrypted records `traffic` holds: into `dst` from `*read` on while it
/// has room (`*read` counts what went in), the rest of a record that does not fit,
/// or every record when there is no `dst`, into `kept` (empty before a read's
/// records: `Records::read` takes it first). Returns the ciphertext rustls says to
/// discard with them, and the error that stopped it, if one did.
fn take_records<Data>(
    traffic: &mut ReadTraffic<'_, '_, Data>,
    mut dst: Option<&mut [MaybeUninit<u8>]>,
    read: &mut usize,
    kept: &mut Vec<u8>,
) -> (usize, Option<rustls::Error>) {
    let mut discard = 0;
    while dst.as_ref().is_none_or(|d| *read < d.len()) {
        let record = match traffic.next_record() {
            None => break,
            Some(Ok(record)) => record,
            Some(Err(e)) => return (discard, Some(e)),
        };
        discard += record.discard;
        let n = match dst.as_deref_mut() {
            Some(d) => copy_into(&mut d[*read..], record.payload),
            None => 0,
        };
        *read += n;
        kept.extend_from_slice(&record.payload[n..]);
    }
    (discard, None)
}

/// Appends to `out` what `write` puts into a slice: asked first with no room, it
/// says how much it needs (rustls' `InsufficientSizeError`), then writes into that
/// much more of `out`. `room` reads the size needed out of an error.
fn append<E>(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    room: fn(&E) -> Option<usize>,
) -> Result<usize, E> {
    let needed = match write(&mut []) {
        Ok(n) => return Ok(n),
        Err(e) => match room(&e) {
            Some(needed) => needed,
            None => return Err(e),
        },
    };
    let start = out.len();
    out.resize(start + needed, 0);
    match write(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(n)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn encode_room(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

fn encrypt_room(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

fn encrypt_error(e: EncryptError) -> rustls::Error {
    match e {
        EncryptError::EncryptExhausted => rustls::Error::EncryptError,
        other => rustls::Error::General(other.to_string()),
    }
}

/// Copies as much of `src` as fits into `dst`; returns the bytes copied.
fn copy_into(dst: &mut [MaybeUninit<u8>], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    // SAFETY: both ranges are `n` bytes long and cannot overlap (`src` is a shared
    // borrow, `dst` an exclusive one); writing bytes into `MaybeUninit<u8>` is
    // always valid.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), n) };
    n
}

/// Frees `buf` when it is empty, else shrinks it to its bytes.
fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        *buf = Vec::new();
    } else {
        buf.shrink_to_fit();
    }
}

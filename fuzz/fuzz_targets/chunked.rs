//! The chunked decoder in both directions: the first byte picks the direction
//! (high bit: a request, whose trailers are dropped) and the read size. Scanning
//! in pieces must agree with scanning at once, and what a request scanner says
//! to forward (each piece's forwarded bytes, then its tail) must be a clean
//! chunked body without trailers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::http::{ChunkedError, ChunkedScanner};

fn scanner(request: bool) -> ChunkedScanner {
    if request {
        ChunkedScanner::dropping_trailers()
    } else {
        ChunkedScanner::new()
    }
}

/// Scans `input` in pieces of `step`: (bytes consumed, bytes to forward, done) or the error.
fn scan(
    request: bool,
    input: &[u8],
    step: usize,
) -> (Result<(usize, Vec<u8>), ChunkedError>, ChunkedScanner) {
    let mut s = scanner(request);
    let mut consumed = 0;
    let mut forward = Vec::new();
    for piece in input.chunks(step) {
        match s.scan(piece) {
            Ok(scan) => {
                assert!(scan.forward + scan.tail <= scan.consumed && scan.consumed <= piece.len());
                assert!(scan.tail <= 2);
                if !request {
                    assert_eq!((scan.forward, scan.tail), (scan.consumed, 0));
                }
                forward.extend_from_slice(&piece[..scan.forward]);
                forward.extend_from_slice(&piece[scan.consumed - scan.tail..scan.consumed]);
                consumed += scan.consumed;
                if s.is_done() {
                    break;
                }
                assert_eq!(scan.consumed, piece.len(), "stopped early without ending");
            }
            Err(e) => return (Err(e), s),
        }
    }
    (Ok((consumed, forward)), s)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let request = control & 0x80 != 0;
    let step = usize::from(control & 0x1f) + 1;
    let (whole, whole_scanner) = scan(request, input, input.len().max(1));
    let (pieces, pieces_scanner) = scan(request, input, step);
    assert_eq!(whole, pieces, "in pieces of {step}");
    assert_eq!(whole_scanner.is_done(), pieces_scanner.is_done());
    assert_eq!(whole_scanner.data_total(), pieces_scanner.data_total());
    let Ok((consumed, forward)) = whole else {
        return;
    };
    if !whole_scanner.is_done() {
        return;
    }
    if !request {
        assert_eq!(forward, &input[..consumed]);
        return;
    }
    // What goes upstream is itself a valid chunked body, with no trailer left.
    let mut again = ChunkedScanner::new();
    let scan = again.scan(&forward).expect("forwarded body is valid");
    assert!(again.is_done() && scan.consumed == forward.len());
    assert_eq!(again.data_total(), whole_scanner.data_total());
    let mut check = ChunkedScanner::dropping_trailers();
    check.scan(&forward).expect("valid");
    assert!(!check.dropped_trailers(), "a trailer line was forwarded");
});

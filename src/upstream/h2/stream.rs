//! One stream of an upstream HTTP/2 connection, held by the exchange's response
//! and by its upload: when the last of them goes, the stream is closed (reset when
//! unfinished) and its place on the connection freed.

use std::rc::Rc;

use super::conn::Connection;
use super::pool::StreamSlot;

pub struct StreamRef {
    pub conn: Rc<Connection>,
    pub id: u32,
    _slot: StreamSlot,
}

impl StreamRef {
    pub fn new(conn: Rc<Connection>, id: u32, slot: StreamSlot) -> Rc<StreamRef> {
        Rc::new(StreamRef {
            conn,
            id,
            _slot: slot,
        })
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.conn.close_stream(self.id);
    }
}

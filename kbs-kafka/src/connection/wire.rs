//! The connection's two tasks: the writer sends queued frames (batched into one flush), the
//! reader reads `[i32 size][size bytes]` frames, bounded by `max_response_bytes`, and hands
//! each response to the request waiting for its correlation id.

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::{Closed, Shared};
use crate::protocol;

pub(super) async fn write_loop(
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = queue.recv().await {
        let mut result = writer.write_all(&frame).await;
        while result.is_ok() {
            match queue.try_recv() {
                Ok(frame) => result = writer.write_all(&frame).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        if let Err(e) = result {
            shared.close(Closed::Io(format!("write failed: {e}")));
            return;
        }
    }
}

pub(super) async fn read_loop(
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    shared: Arc<Shared>,
    max_response_bytes: usize,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match read_frame(&mut reader, &mut buf, max_response_bytes).await {
            Ok(frame) => frame,
            Err(why) => {
                shared.close(why);
                return;
            }
        };
        dispatch(&shared, frame);
    }
}

fn dispatch(shared: &Shared, mut frame: Bytes) {
    // read_frame guarantees at least the 4 correlation id bytes.
    let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let Some(waiter) = shared.lock().pending.remove(&correlation_id) else {
        tracing::debug!(broker = %shared.broker, correlation_id, "response nobody waits for (timed out?)");
        return;
    };
    let reply = match protocol::strip_response_header(&mut frame, waiter.header_version) {
        Ok(_) => Ok(frame),
        Err(reason) => Err(Closed::Io(format!("bad response header: {reason}"))),
    };
    let _ = waiter.reply.send(reply);
}

/// Reads one `[i32 size][size bytes]` frame; the buffer grows only as bytes arrive.
pub(super) async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_response_bytes: usize,
) -> std::result::Result<Bytes, Closed> {
    let io_error = |e: io::Error| Closed::Io(format!("read failed: {e}"));
    while buf.len() < 4 {
        if reader.read_buf(buf).await.map_err(io_error)? == 0 {
            return Err(Closed::Io(if buf.is_empty() {
                "closed by the broker".into()
            } else {
                "closed by the broker inside a frame header".into()
            }));
        }
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let Ok(size) = usize::try_from(size) else {
        return Err(Closed::Io(format!("negative frame size {size}")));
    };
    if size > max_response_bytes {
        return Err(Closed::TooLarge {
            size,
            limit: max_response_bytes,
        });
    }
    if size < 4 {
        return Err(Closed::Io(format!(
            "frame of {size} bytes is too short for a correlation id"
        )));
    }
    let total = 4 + size;
    while buf.len() < total {
        let missing = total - buf.len();
        buf.reserve(missing.min(16 << 20));
        if reader.read_buf(buf).await.map_err(io_error)? == 0 {
            return Err(Closed::Io(format!(
                "closed by the broker {missing} bytes before the end of a frame"
            )));
        }
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(4);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocating() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut buf = BytesMut::new();
        match read_frame(&mut input, &mut buf, 1 << 20).await {
            Err(Closed::TooLarge { size, limit }) => assert_eq!((size, limit), (0x7fff_ffff, 1 << 20)),
            other => panic!("{other:?}"),
        }
        assert!(buf.capacity() < 1 << 20);
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut input, &mut BytesMut::new(), 1 << 20).await,
            Err(Closed::Io(_))
        ));
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_truncated_frames() {
        let mut wire = Vec::new();
        for body in [&b"\0\0\0\x07abc"[..], &b"\0\0\0\x08"[..]] {
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        let mut input = &wire[..];
        let mut buf = BytesMut::new();
        assert_eq!(
            &read_frame(&mut input, &mut buf, 100).await.unwrap()[..],
            b"\0\0\0\x07abc"
        );
        assert_eq!(&read_frame(&mut input, &mut buf, 100).await.unwrap()[..], b"\0\0\0\x08");
        assert!(
            matches!(read_frame(&mut input, &mut buf, 100).await, Err(Closed::Io(m)) if m == "closed by the broker")
        );
        let mut input: &[u8] = &[0, 0, 0, 10, 1, 2, 3];
        assert!(
            matches!(read_frame(&mut input, &mut BytesMut::new(), 100).await, Err(Closed::Io(m)) if m.contains("before the end"))
        );
    }
}

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
    let pool = Arc::new(FramePool::default());
    loop {
        let frame = match read_frame_pooled(&mut reader, &mut buf, max_response_bytes, Some(&pool)).await {
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

/// Frames at least this large are read into pooled buffers.
const POOLED_FRAME_BYTES: usize = 256 << 10;

/// How many finished frame buffers a connection keeps for its next large responses (two: a
/// backup keeps two fetches in flight per broker)...
const POOLED_FRAMES: usize = 2;

/// ... each of at most this capacity, so a connection keeps at most 32 MiB idle.
const POOLED_FRAME_MAX_CAPACITY: usize = 16 << 20;

/// Buffers of large responses (fetches) their readers are done with, kept for the next ones:
/// a new buffer of megabytes costs a page fault per 4 KiB when it is first written, a reused
/// one none. At most [`POOLED_FRAMES`] of at most [`POOLED_FRAME_MAX_CAPACITY`] are kept.
#[derive(Default)]
pub(super) struct FramePool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl FramePool {
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }
}

/// A frame in a pooled buffer; dropping it (when the last `Bytes` of it goes) returns the
/// buffer to its pool.
struct PooledFrame {
    buf: Vec<u8>,
    pool: Arc<FramePool>,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOLED_FRAMES && self.buf.capacity() <= POOLED_FRAME_MAX_CAPACITY {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            free.push(buf);
        }
    }
}

/// Reads one `[i32 size][size bytes]` frame; the buffer grows only as bytes arrive.
pub(super) async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_response_bytes: usize,
) -> std::result::Result<Bytes, Closed> {
    read_frame_pooled(reader, buf, max_response_bytes, None).await
}

/// [`read_frame`], reading large frames into buffers of `pool`.
pub(super) async fn read_frame_pooled<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_response_bytes: usize,
    pool: Option<&Arc<FramePool>>,
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
    if let Some(pool) = pool.filter(|_| size >= POOLED_FRAME_BYTES) {
        let mut frame = pool.take();
        buf.advance(4);
        let buffered = buf.len().min(size);
        frame.extend_from_slice(&buf[..buffered]);
        buf.advance(buffered);
        while frame.len() < size {
            let missing = size - frame.len();
            frame.reserve(missing.min(16 << 20));
            // Only this frame's bytes: the next frame's start stays in the socket for `buf`.
            let read = (&mut *reader)
                .take(missing as u64)
                .read_buf(&mut frame)
                .await
                .map_err(io_error)?;
            if read == 0 {
                return Err(Closed::Io(format!(
                    "closed by the broker {missing} bytes before the end of a frame"
                )));
            }
        }
        return Ok(Bytes::from_owner(PooledFrame {
            buf: frame,
            pool: pool.clone(),
        }));
    }
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
    async fn large_frames_come_in_pooled_buffers_that_are_reused() {
        let body: Vec<u8> = (0..POOLED_FRAME_BYTES + 10).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        for _ in 0..3 {
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(&body);
        }
        wire.extend_from_slice(&6i32.to_be_bytes());
        wire.extend_from_slice(b"\0\0\0\x09ok");
        let pool = Arc::new(FramePool::default());
        let mut input = &wire[..];
        let mut buf = BytesMut::new();
        let first = read_frame_pooled(&mut input, &mut buf, 1 << 20, Some(&pool))
            .await
            .unwrap();
        assert_eq!(&first[..], &body[..]);
        let first_at = first.as_ptr();
        drop(first);
        let second = read_frame_pooled(&mut input, &mut buf, 1 << 20, Some(&pool))
            .await
            .unwrap();
        assert_eq!(&second[..], &body[..]);
        assert_eq!(second.as_ptr(), first_at, "the first frame's buffer is reused");
        // A slice kept alive keeps its buffer out of the pool.
        let kept = second.slice(10..20);
        drop(second);
        let third = read_frame_pooled(&mut input, &mut buf, 1 << 20, Some(&pool))
            .await
            .unwrap();
        assert_eq!(&third[..], &body[..]);
        assert_ne!(third.as_ptr(), first_at);
        assert_eq!(&kept[..], &body[10..20]);
        let small = read_frame_pooled(&mut input, &mut buf, 1 << 20, Some(&pool))
            .await
            .unwrap();
        assert_eq!(&small[..], b"\0\0\0\x09ok");
        // A truncated large frame is an error, not a short frame.
        let mut cut = (body.len() as i32).to_be_bytes().to_vec();
        cut.extend_from_slice(&body[..1000]);
        let mut input = &cut[..];
        assert!(matches!(
            read_frame_pooled(&mut input, &mut BytesMut::new(), 1 << 20, Some(&pool)).await,
            Err(Closed::Io(m)) if m.contains("before the end")
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

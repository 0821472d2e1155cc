//! Multipart uploads: the part-level [`MultipartUpload`] each backend implements and the
//! buffering [`MultipartWriter`] callers use.

use std::collections::VecDeque;
use std::fmt;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::error::{Error, Operation, Result};
use crate::storage::PutOutcome;

/// A multipart upload in progress, at the level of numbered parts.
///
/// Parts are numbered from 0 and uploaded in order; sending a part number again replaces that
/// part (so a failed part can be retried). Nothing is visible at the key until
/// [`complete`](Self::complete) succeeds. Dropping an upload that was neither completed nor
/// aborted aborts it (in the background for remote stores).
#[async_trait]
pub trait MultipartUpload: Send + Sync + fmt::Debug {
    /// Uploads part `index`. All parts but the last must have at least
    /// [`Capabilities::min_part_size`](crate::Capabilities::min_part_size) bytes.
    async fn put_part(&self, index: usize, data: Bytes) -> Result<()>;

    /// Publishes the object made of parts `0..n` (every part uploaded so far) atomically; with
    /// no part at all, an empty object.
    async fn complete(&self) -> Result<PutOutcome>;

    /// Discards the upload and its parts.
    async fn abort(&self) -> Result<()>;
}

/// A buffering writer over a [`MultipartUpload`]: [`write`](Self::write) chunks of any size,
/// then [`complete`](Self::complete). Created by
/// [`ObjectStorageExt::put_multipart`](crate::ObjectStorageExt::put_multipart).
///
/// If a part upload or the completion fails, the writer aborts the upload before returning the
/// error; dropping the writer without completing it aborts the upload as well. Either way no
/// object becomes visible at the key.
pub struct MultipartWriter {
    upload: Option<Box<dyn MultipartUpload>>,
    part_size: usize,
    pending: VecDeque<Bytes>,
    pending_len: usize,
    next_part: usize,
    written: u64,
    key: String,
    store: String,
}

impl fmt::Debug for MultipartWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartWriter")
            .field("store", &self.store)
            .field("key", &self.key)
            .field("part_size", &self.part_size)
            .field("parts_uploaded", &self.next_part)
            .field("bytes_written", &self.written)
            .field("failed", &self.upload.is_none())
            .finish()
    }
}

impl MultipartWriter {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>, part_size: usize, key: &str, store: &str) -> Self {
        MultipartWriter {
            upload: Some(upload),
            part_size,
            pending: VecDeque::new(),
            pending_len: 0,
            next_part: 0,
            written: 0,
            key: key.to_owned(),
            store: store.to_owned(),
        }
    }

    /// The part size in bytes.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Bytes accepted by [`write`](Self::write) so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Appends `data`; uploads a part whenever a full part is buffered.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.upload.is_none() {
            return Err(self.failed_error());
        }
        self.written += data.len() as u64;
        self.pending_len += data.len();
        if !data.is_empty() {
            self.pending.push_back(data);
        }
        while self.pending_len >= self.part_size {
            let part = self.take(self.part_size);
            self.upload_part(part).await?;
        }
        Ok(())
    }

    /// Uploads the buffered rest as the last part and publishes the object.
    pub async fn complete(mut self) -> Result<PutOutcome> {
        if self.upload.is_none() {
            return Err(self.failed_error());
        }
        if self.pending_len > 0 {
            let part = self.take(self.pending_len);
            self.upload_part(part).await?;
        }
        let Some(upload) = self.upload.take() else {
            return Err(self.failed_error());
        };
        match upload.complete().await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                abort_quietly(upload.as_ref(), &error).await;
                Err(error)
            }
        }
    }

    /// Discards the upload.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload.take() {
            Some(upload) => upload.abort().await,
            None => Ok(()),
        }
    }

    fn take(&mut self, len: usize) -> Bytes {
        self.pending_len -= len;
        if let Some(first) = self.pending.front_mut()
            && first.len() >= len
        {
            let part = first.split_to(len);
            if first.is_empty() {
                self.pending.pop_front();
            }
            return part;
        }
        let mut part = BytesMut::with_capacity(len);
        while part.len() < len {
            let Some(mut chunk) = self.pending.pop_front() else {
                break;
            };
            let need = len - part.len();
            if chunk.len() > need {
                let rest = chunk.split_off(need);
                self.pending.push_front(rest);
            }
            part.extend_from_slice(&chunk);
        }
        part.freeze()
    }

    async fn upload_part(&mut self, part: Bytes) -> Result<()> {
        let Some(upload) = self.upload.as_ref() else {
            return Err(self.failed_error());
        };
        match upload.put_part(self.next_part, part).await {
            Ok(()) => {
                self.next_part += 1;
                Ok(())
            }
            Err(error) => {
                if let Some(upload) = self.upload.take() {
                    abort_quietly(upload.as_ref(), &error).await;
                }
                self.pending.clear();
                self.pending_len = 0;
                Err(error)
            }
        }
    }

    fn failed_error(&self) -> Error {
        Error::Backend {
            store: self.store.clone(),
            operation: Operation::MultipartPart,
            key: self.key.clone(),
            message: "the multipart upload already failed and was aborted".to_owned(),
            retriable: false,
        }
    }
}

async fn abort_quietly(upload: &dyn MultipartUpload, cause: &Error) {
    if let Err(abort_error) = upload.abort().await {
        tracing::warn!(%cause, %abort_error, "aborting a failed multipart upload failed too");
    }
}

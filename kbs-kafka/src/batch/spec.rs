//! Test-only builders that write record batches and Fetch responses byte by byte, straight
//! from the Kafka protocol guide (https://kafka.apache.org/documentation/#recordbatch and the
//! FetchResponse v11 schema) — independent of the codec under test. They build the
//! transactional fixtures (commit/abort markers, aborted-transaction lists) byte by byte; the
//! integration tests check the same against real transactions on Apache Kafka.

/// One record of a [`SpecBatch`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecRecord {
    pub(crate) offset_delta: i32,
    pub(crate) timestamp_delta: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Compresses a records section.
pub(crate) type Compressor = fn(&[u8]) -> Vec<u8>;

/// A record batch, every header field explicit.
#[derive(Debug, Clone)]
pub(crate) struct SpecBatch {
    pub(crate) base_offset: i64,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) attributes: i16,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) records: Vec<SpecRecord>,
    /// Compresses the records section (the attributes must name the same codec).
    pub(crate) compress: Option<Compressor>,
}

/// Transactional attribute bit.
pub(crate) const TRANSACTIONAL: i16 = 0x10;
/// Control attribute bit.
pub(crate) const CONTROL: i16 = 0x20;

fn varlong(out: &mut Vec<u8>, n: i64) {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
    match b {
        None => varlong(out, -1),
        Some(b) => {
            varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

impl SpecRecord {
    fn write(&self, out: &mut Vec<u8>) {
        let mut body = vec![0u8]; // attributes
        varlong(&mut body, self.timestamp_delta);
        varlong(&mut body, i64::from(self.offset_delta));
        bytes_field(&mut body, &self.key);
        bytes_field(&mut body, &self.value);
        varlong(&mut body, self.headers.len() as i64);
        for (k, v) in &self.headers {
            bytes_field(&mut body, &Some(k.clone()));
            bytes_field(&mut body, v);
        }
        varlong(out, body.len() as i64);
        out.extend_from_slice(&body);
    }
}

impl SpecBatch {
    /// A plain data batch of `records` consecutive records from `base_offset`.
    pub(crate) fn data(base_offset: i64, producer_id: i64, transactional: bool, values: &[&str]) -> SpecBatch {
        let records: Vec<SpecRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| SpecRecord {
                offset_delta: i as i32,
                timestamp_delta: i as i64,
                key: Some(format!("k{}", base_offset + i as i64).into_bytes()),
                value: Some(v.as_bytes().to_vec()),
                headers: vec![(b"h".to_vec(), Some(v.as_bytes().to_vec()))],
            })
            .collect();
        SpecBatch {
            base_offset,
            partition_leader_epoch: 0,
            attributes: if transactional { TRANSACTIONAL } else { 0 },
            last_offset_delta: records.len() as i32 - 1,
            base_timestamp: 1_700_000_000_000 + base_offset * 1000,
            max_timestamp: 1_700_000_000_000 + base_offset * 1000 + records.len() as i64 - 1,
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            base_sequence: if producer_id >= 0 { base_offset as i32 } else { -1 },
            records,
            compress: None,
        }
    }

    /// A control batch holding one COMMIT (`commit`) or ABORT marker.
    pub(crate) fn control(base_offset: i64, producer_id: i64, commit: bool) -> SpecBatch {
        let mut key = 0i16.to_be_bytes().to_vec(); // control record version
        key.extend_from_slice(&(if commit { 1i16 } else { 0i16 }).to_be_bytes());
        let mut value = 0i16.to_be_bytes().to_vec(); // end transaction marker version
        value.extend_from_slice(&7i32.to_be_bytes()); // coordinator epoch
        let ts = 1_700_000_000_000 + base_offset * 1000;
        SpecBatch {
            base_offset,
            partition_leader_epoch: 0,
            attributes: TRANSACTIONAL | CONTROL,
            last_offset_delta: 0,
            base_timestamp: ts,
            max_timestamp: ts,
            producer_id,
            producer_epoch: 0,
            base_sequence: -1,
            records: vec![SpecRecord {
                offset_delta: 0,
                timestamp_delta: 0,
                key: Some(key),
                value: Some(value),
                headers: vec![],
            }],
            compress: None,
        }
    }

    /// The batch's bytes, CRC-32C included.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut records = Vec::new();
        for r in &self.records {
            r.write(&mut records);
        }
        if let Some(compress) = self.compress {
            records = compress(&records);
        }
        // Bytes from the attributes on: the CRC covers exactly these.
        let mut tail = Vec::new();
        tail.extend_from_slice(&self.attributes.to_be_bytes());
        tail.extend_from_slice(&self.last_offset_delta.to_be_bytes());
        tail.extend_from_slice(&self.base_timestamp.to_be_bytes());
        tail.extend_from_slice(&self.max_timestamp.to_be_bytes());
        tail.extend_from_slice(&self.producer_id.to_be_bytes());
        tail.extend_from_slice(&self.producer_epoch.to_be_bytes());
        tail.extend_from_slice(&self.base_sequence.to_be_bytes());
        tail.extend_from_slice(&(self.records.len() as i32).to_be_bytes());
        tail.extend_from_slice(&records);
        let crc = crc32c::crc32c(&tail);
        let batch_length = 4 + 1 + 4 + tail.len(); // leader epoch, magic, crc, tail
        let mut out = Vec::with_capacity(12 + batch_length);
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&(batch_length as i32).to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(2);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&tail);
        out
    }
}

/// One partition of a [`fetch_response_v11`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecPartition {
    pub(crate) partition: i32,
    pub(crate) error_code: i16,
    pub(crate) high_watermark: i64,
    pub(crate) last_stable_offset: i64,
    pub(crate) log_start_offset: i64,
    /// `None` writes a null array.
    pub(crate) aborted: Option<Vec<(i64, i64)>>,
    /// `None` writes null records.
    pub(crate) records: Option<Vec<u8>>,
}

/// A FetchResponse v11 body (no header), per the message schema:
/// `throttle_time_ms i32, error_code i16, session_id i32, [topic string, [partition_index i32,
/// error_code i16, high_watermark i64, last_stable_offset i64, log_start_offset i64,
/// aborted_transactions nullable [producer_id i64, first_offset i64], preferred_read_replica
/// i32, records nullable bytes]]`.
pub(crate) fn fetch_response_v11(topic: &str, partitions: &[SpecPartition]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    out.extend_from_slice(&0i16.to_be_bytes()); // error_code
    out.extend_from_slice(&0i32.to_be_bytes()); // session_id
    out.extend_from_slice(&1i32.to_be_bytes()); // one topic
    out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for p in partitions {
        out.extend_from_slice(&p.partition.to_be_bytes());
        out.extend_from_slice(&p.error_code.to_be_bytes());
        out.extend_from_slice(&p.high_watermark.to_be_bytes());
        out.extend_from_slice(&p.last_stable_offset.to_be_bytes());
        out.extend_from_slice(&p.log_start_offset.to_be_bytes());
        match &p.aborted {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(list) => {
                out.extend_from_slice(&(list.len() as i32).to_be_bytes());
                for (producer_id, first_offset) in list {
                    out.extend_from_slice(&producer_id.to_be_bytes());
                    out.extend_from_slice(&first_offset.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&(-1i32).to_be_bytes()); // preferred_read_replica
        match &p.records {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(r) => {
                out.extend_from_slice(&(r.len() as i32).to_be_bytes());
                out.extend_from_slice(r);
            }
        }
    }
    out
}

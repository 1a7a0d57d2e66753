//! The adapter's one error type; the [`oms_core::ports::OrderLog`] implementation maps it
//! onto [`oms_core::ports::LogError`] so callers of the port see only core errors.

use std::time::Duration;

use rdkafka::error::KafkaError;
use thiserror::Error;

/// Why a Kafka operation failed.
#[derive(Debug, Error)]
pub enum KafkaAdapterError {
    /// librdkafka refused or failed the operation.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker did not answer within the bound.
    #[error("kafka: no answer within {0:?}")]
    Timeout(Duration),
    /// A topic the adapter needs does not exist (create topics first).
    #[error("kafka: topic {0} not found (run `oms admin create-topics`)")]
    MissingTopic(String),
    /// A record on `orders` could not be decoded.
    #[error("kafka: undecodable record at {topic}/{partition}@{offset}: {source}")]
    Codec {
        topic: String,
        partition: i32,
        offset: i64,
        source: oms_core::codec::CodecError,
    },
    /// The log does not match the checkpoint (records deleted or the topic recreated).
    #[error("kafka: log inconsistent at {location}: {reason}")]
    Inconsistent { location: String, reason: String },
    /// Admin operation failed for one topic.
    #[error("kafka: topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

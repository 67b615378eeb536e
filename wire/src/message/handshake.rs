//! Handshake: agree on a protocol version and learn the broker's limits.

wire_type! {
    /// First request on a connection.
    pub struct HandshakeRequest {
        /// Free-form client identifier for the broker's logs.
        pub client_id: String,
        /// Client software version.
        pub client_version: String,
        /// Oldest protocol version the client speaks.
        pub protocol_version_min: u16,
        /// Newest protocol version the client speaks.
        pub protocol_version_max: u16,
    }
}
message!(HandshakeRequest, Handshake);

wire_type! {
    /// The broker's answer.
    pub struct HandshakeResponse {
        /// Error code (0 = none; `UNSUPPORTED_VERSION` if the ranges do not overlap).
        pub error: u16,
        /// The version both sides will speak.
        pub protocol_version: u16,
        /// Broker software version.
        pub broker_version: String,
        /// Every api the broker serves, with its version range.
        pub apis: Vec<ApiVersionRange>,
        /// The broker's maximum frame body; larger requests are refused.
        pub frame_body_bytes_max: u32,
        /// The broker's maximum record batch.
        pub batch_bytes_max: u32,
        /// Shard that answered.
        pub shard_id: u32,
    }
}
message!(HandshakeResponse, Handshake);

wire_type! {
    /// Versions of one api.
    pub struct ApiVersionRange {
        /// Api key number.
        pub api_key: u16,
        /// Oldest version served.
        pub version_min: u16,
        /// Newest version served.
        pub version_max: u16,
    }
}

//! The body of a frame with `FLAG_ERROR`: a request that could not be answered at all.

wire_type! {
    /// Sent instead of the api's response when the request as a whole failed: an unknown api
    /// key, an unsupported version, a body that failed validation.
    pub struct ErrorBody {
        /// A stable [`crate::ErrorCode`] number.
        pub code: u16,
        /// Detail for a person.
        pub message: String,
    }
}

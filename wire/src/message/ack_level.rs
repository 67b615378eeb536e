//! The ack level: how far an append must get before the producer is answered. A produce
//! request names one, and a topic's config holds the default used when it asks for none.

wire_type! {
    /// How far an append must get before the producer is answered.
    #[repr(u8)]
    pub enum AckLevel {
        /// On receipt, before the append.
        None,
        /// After the write to the segment file completed (in the page cache of the device).
        Written,
        /// After an fdatasync that covers the batch: survives power loss.
        #[default]
        Durable,
    }
}

impl AckLevel {
    /// Lower-case name as used in config and CLIs.
    pub fn name(self) -> &'static str {
        match self {
            AckLevel::None => "none",
            AckLevel::Written => "written",
            AckLevel::Durable => "durable",
        }
    }

    /// Parses `none`, `written` or `durable`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(AckLevel::None),
            "written" => Some(AckLevel::Written),
            "durable" => Some(AckLevel::Durable),
            _ => None,
        }
    }
}

impl ArchivedAckLevel {
    /// The native value.
    pub fn to_native(self) -> AckLevel {
        match self {
            ArchivedAckLevel::None => AckLevel::None,
            ArchivedAckLevel::Written => AckLevel::Written,
            ArchivedAckLevel::Durable => AckLevel::Durable,
        }
    }
}

//! DescribeClientQuotas (v0–1): no client quotas are configured here (the broker bounds a
//! connection by its memory budgets, not by byte rates per client), so the answer is an empty
//! list. `kafka-configs --describe --entity-type users` asks for quotas before it asks for
//! SCRAM credentials and stops if the request is not understood. As Kafka, DESCRIBE on the
//! cluster is needed (Kafka's DESCRIBE_CONFIGS: CLUSTER_AUTHORIZATION_FAILED).
//! AlterClientQuotas stays unspoken (UNSUPPORTED_VERSION): a quota set would not be enforced.

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;

use super::connection::{respond, Ctx, Session};
use super::sasl::allowed;
use crate::auth::acl::{Operation, Resource};

/// DescribeClientQuotas.
pub fn describe(s: &Session, ctx: Ctx, _req: DescribeClientQuotasRequest) -> Option<Vec<u8>> {
    let mut out = DescribeClientQuotasResponse::default();
    if !allowed(s, Operation::Describe, Resource::Cluster) {
        out.error_code = K::ClusterAuthorizationFailed.code();
        out.error_message = Some(StrBytes::from_static_str("describe on the cluster is needed"));
        return respond(ctx, &out);
    }
    out.entries = Some(Vec::new());
    respond(ctx, &out)
}

tracetrack_common::service_main!(tracetrack_billing, "billing");

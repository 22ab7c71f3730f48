tracetrack_common::service_main!(tracetrack_bag_registry, "bag-registry");

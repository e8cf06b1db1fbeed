//! The generated gRPC code of `proto/` (one source of truth for every service).

/// `product.ProductService`: stock reservation by order id.
pub mod product {
    tonic::include_proto!("product");
}

/// `order.OrderService`: orders over gRPC.
pub mod order {
    tonic::include_proto!("order");
}

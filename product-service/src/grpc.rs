//! The gRPC `product.ProductService` (docs/contracts.md): the order saga's stock
//! calls. Every failure maps to a proper status code, never UNKNOWN.

use shared::error::db_status;
use shared::id::{OrderId, ProductId};
use shared::proto::product::product_service_server::ProductService;
use shared::proto::product::{
    CheckAvailabilityRequest, CheckAvailabilityResponse, CommitStockRequest, CommitStockResponse,
    GetProductRequest, Product as ProtoProduct, ReleaseStockRequest, ReleaseStockResponse,
    ReservationStatus as ProtoStatus, ReserveStockRequest, ReserveStockResponse, ReservedItem,
};
use shared::stock::{OrderLine, Settlement};
use tonic::{Request, Response, Status};

use crate::cache::ProductCache;
use crate::stock::{ReservationStatus, StockChange, StockError};
use crate::store::Store;

/// What a gRPC handler answers.
type Reply<T> = Result<Response<T>, Status>;

/// The only service whose certificate may move stock: the order saga's.
pub const STOCK_CALLER: &str = "order-service";

/// The gRPC face of the product store.
#[derive(Clone)]
pub struct ProductGrpc {
    pub store: Store,
    pub cache: ProductCache,
    /// Whether stock calls demand [`STOCK_CALLER`]'s certificate: always,
    /// unless gRPC runs without TLS (`GRPC_TLS=off`), when no caller has one.
    pub check_caller: bool,
}

impl From<StockError> for Status {
    fn from(e: StockError) -> Self {
        match e {
            StockError::InvalidArgument(m) => Status::invalid_argument(m),
            StockError::ProductNotFound(_) | StockError::ReservationNotFound(_) => {
                Status::not_found(e.to_string())
            }
            StockError::FailedPrecondition(m) => Status::failed_precondition(m),
            StockError::TotalTooLarge(e) => Status::out_of_range(e.to_string()),
            StockError::Db(e) => db_status(e),
        }
    }
}

fn proto_status(s: ReservationStatus) -> i32 {
    (match s {
        ReservationStatus::Reserved => ProtoStatus::Reserved,
        ReservationStatus::Insufficient => ProtoStatus::Insufficient,
        ReservationStatus::Released => ProtoStatus::Released,
        ReservationStatus::Committed => ProtoStatus::Committed,
    }) as i32
}

impl ProductGrpc {
    async fn product(&self, id: i64) -> Result<crate::model::Product, Status> {
        self.store
            .get(id)
            .await
            .map_err(db_status)?
            .ok_or_else(|| Status::not_found(format!("product {id} not found")))
    }

    /// Stock moves only for the saga (docs/security.md).
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.check_caller {
            shared::tls::require_peer(request, STOCK_CALLER)?;
        }
        Ok(())
    }

    /// Settles order `order_id`'s reservation as `how` says, for the saga
    /// only, and answers with the reservation's status.
    async fn settle<T>(
        &self,
        request: &Request<T>,
        order_id: i64,
        how: Settlement,
    ) -> Result<i32, Status> {
        self.authorize(request)?;
        let order_id = OrderId::new(order_id)?;
        let change = self.store.settle(order_id, how).await?;
        self.invalidate(&change).await;
        tracing::info!(%order_id, settlement = ?how, status = ?change.outcome, "settle stock");
        Ok(proto_status(change.outcome))
    }

    async fn invalidate<T>(&self, change: &StockChange<T>) {
        for &(product_id, version) in &change.touched {
            self.cache.invalidate(product_id.get(), version).await;
        }
    }
}

#[tonic::async_trait]
impl ProductService for ProductGrpc {
    async fn get_product(&self, request: Request<GetProductRequest>) -> Reply<ProtoProduct> {
        let product = self
            .product(ProductId::new(request.into_inner().id)?.get())
            .await?;
        Ok(Response::new(ProtoProduct {
            id: product.id,
            name: product.name,
            price_cents: product.price.cents(),
            stock: product.stock,
            version: product.version,
        }))
    }

    async fn check_availability(
        &self,
        request: Request<CheckAvailabilityRequest>,
    ) -> Reply<CheckAvailabilityResponse> {
        let req = request.into_inner();
        let id = ProductId::new(req.product_id)?.get();
        if req.quantity <= 0 {
            return Err(Status::invalid_argument("quantity must be at least 1"));
        }
        let product = self.product(id).await?;
        Ok(Response::new(CheckAvailabilityResponse {
            available: product.stock >= req.quantity,
            stock: product.stock,
            price_cents: product.price.cents(),
        }))
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Reply<ReserveStockResponse> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let order_id = OrderId::new(req.order_id)?;
        let items = OrderLine::all(&req.items)?;
        let change = self.store.reserve(order_id, &items).await?;
        self.invalidate(&change).await;
        let reservation = change.outcome;
        let total = reservation.total().map_err(StockError::from)?;
        tracing::info!(%order_id, status = ?reservation.status, "reserve stock");
        // The proto says 0 for "no short product".
        let (short_product_id, available_stock) = reservation
            .short
            .map_or((0, 0), |s| (s.product_id.get(), s.available));
        Ok(Response::new(ReserveStockResponse {
            status: proto_status(reservation.status),
            total_cents: total.cents(),
            items: reservation
                .items
                .iter()
                .map(|i| ReservedItem {
                    product_id: i.product_id.get(),
                    quantity: i.quantity,
                    unit_price_cents: i.unit_price.cents(),
                })
                .collect(),
            short_product_id,
            available_stock,
        }))
    }

    async fn release_stock(
        &self,
        req: Request<ReleaseStockRequest>,
    ) -> Reply<ReleaseStockResponse> {
        let status = self
            .settle(&req, req.get_ref().order_id, Settlement::Release)
            .await?;
        Ok(Response::new(ReleaseStockResponse { status }))
    }

    async fn commit_stock(&self, req: Request<CommitStockRequest>) -> Reply<CommitStockResponse> {
        let status = self
            .settle(&req, req.get_ref().order_id, Settlement::Commit)
            .await?;
        Ok(Response::new(CommitStockResponse { status }))
    }
}

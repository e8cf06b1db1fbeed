# minishop: the two commands of the README are `make up` and `make test`.
.PHONY: up down restart test lint fmt bench broker seed compose-up compose-down check-deploy asyncapi

up:        ## build and start the whole local stack, print the URLs
	scripts/up.sh
down:      ## stop what `make up` started (by pid files)
	scripts/down.sh
restart: down up
test:      ## run every test against real PostgreSQL and Redis
	scripts/test.sh
lint:      ## formatting and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
fmt:
	cargo fmt --all
seed:      ## load a demo catalogue and a demo customer into the running stack
	scripts/seed.sh
bench:     ## benchmark figures of this machine (see scripts/bench.sh)
	scripts/bench.sh
broker:    ## build the Kafka-protocol broker once (about 8 minutes)
	scripts/broker.sh install
compose-up:   ## the whole system in containers (needs a Docker engine): docker compose up
	scripts/keys.sh
	docker compose up -d --build
compose-down: ## stop the containers (volumes are kept; add -v to drop them)
	docker compose down
asyncapi:  ## regenerate docs/asyncapi.yaml from the event types
	cargo run --quiet -p ops --bin minishop-ops -- --topic order_events asyncapi > docs/asyncapi.yaml
check-deploy: ## validate deploy/, docker-compose.yml, the Dockerfile and the CI workflow offline
	scripts/check-deploy.sh

# One image for every verimarket service (api, indexer, settlement, node, workers, anvil).
# Build: docker build -t verimarket .   For CUDA workers, base on a CUDA runtime image and
# install your CUDA build of torch before the project (the range in pyproject admits it).
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm build-essential curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir -e .

COPY tools ./tools
COPY contracts ./contracts
COPY migrations ./migrations
COPY alembic.ini* ./
RUN cd contracts && ../node_modules/.bin/forge build && verimarket models build --out /app/artifacts

ENV VERIMARKET_ARTIFACTS=/app/artifacts \
    VERIMARKET_HOME=/data
VOLUME ["/data"]
ENTRYPOINT ["verimarket"]

# One image for every fraudstream service; the container's command picks the service.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
# Editable install keeps schemas/ beside the package, where the codec looks for it.
RUN pip install -e . && useradd --system --uid 10001 fraudstream
USER fraudstream
ENTRYPOINT ["fraudstream"]
CMD ["--help"]

# FairFleet on Ray: the image every pod of configs/kuberay/*.yaml runs (head, workers, the RayJob
# submitter). Build and push it (docs/how-to/kuberay.md):
#   docker build -t fairfleet:0.1.0 .
#
# The base is the official Ray image with the Ray and Python versions the project is developed
# and tested with: tests/unit/test_dockerfile.py fails when RAY_VERSION differs from the installed
# Ray or PYTHON_TAG from the test interpreter, and when the install below stops installing the
# project itself. The CPU variant: FairFleet simulates phones and serves FAISS on CPUs.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu

ARG RAY_VERSION
# Pinned exactly, as in pyproject.toml; the CPU wheel index keeps the multi-GB CUDA build out.
ARG TORCH_VERSION=2.13.0

# The checkout lives here: the jobs and Serve configs use paths relative to it (the manifests set
# it as the containers' workingDir too), and `python jobs/<job>.py` imports this copy.
WORKDIR /home/ray/fairfleet
COPY --chown=ray:users . .

# The project itself, with its declared dependencies (pyproject.toml): torch first from the CPU
# index, then `pip install .` holding Ray at the base image's version so the pods and the image's
# Ray can never differ.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "ray[default,serve]==${RAY_VERSION}" . \
    && python -c "import ray, torch, faiss, serve.app, jobs.fl_sim; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"

ENV PYTHONUNBUFFERED=1

"""One request's processing, free of gRPC and Envoy types (see `request_pipeline.py`)."""

from extproc.pipeline.bodies import ResponseMode
from extproc.pipeline.lifecycle import Phase
from extproc.pipeline.replies import BodyOut, Continue, Immediate
from extproc.pipeline.request_pipeline import RequestPipeline

__all__ = ["BodyOut", "Continue", "Immediate", "Phase", "RequestPipeline", "ResponseMode"]

"""Components for the operator unit tests (allowed via ``[mlpipe] component_modules``)."""

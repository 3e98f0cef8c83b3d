"""Components and helpers used only by the benchmarks (allowed via ``[mlpipe] component_modules``)."""

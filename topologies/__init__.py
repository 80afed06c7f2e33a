"""faust wiring of the processor: topics -> agent -> tables -> state topics."""

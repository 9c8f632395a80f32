"""The pure engine: market data, indicators, regime, signals, state machine, actions, rails, cadence."""

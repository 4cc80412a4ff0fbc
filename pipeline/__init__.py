"""The voice pipeline Voxwatch watches: stages, their engines, pools, caches, queues, regions,
degradation, and the load simulator that drives the same code with simulated engines.

How the parts fit (for whoever plugs in an engine or drives calls):

- `pipeline.engines`: the engine protocols, one per stage, all async. `SpeechToText.transcribe(
  Utterance) -> Transcript(text, confidence)`, `IntentClassifier.classify(text) -> IntentResult(intent,
  confidence, fallback)`, `ResponseEngine.generate(ResponseRequest) -> ResponseText(text, ttft_s,
  prompt/completion tokens)` (the LLM backend), `IntegrationConnector.execute(IntegrationAction) ->
  IntegrationResult` (CRM, orders, ticketing, catalog), `TextToSpeech.synthesize(text) -> SpokenReply`.
  Bundle them in `Engines(stt, nlu, llm, tts, connectors={system: connector})`. Raise `EngineError`
  (or anything): the runner turns it into a failed stage, never a crashed call or process.
- `pipeline.runner.Pipeline`: owns the wiring. Its stages read like the call flow
  (edge -> stt -> nlu -> response -> integrations -> speech -> handoff); each stage obeys the
  degradation level, goes through caches and connection pools, and records its metrics and span.
  `Pipeline(engines, clock=..., sink=..., telemetry=...)` (metrics via `pipeline.metrics.PipelineMetrics`,
  spans via telemetry's OpenTelemetry tracer); `ctx = pipeline.start_call(region=..., language=...)`,
  `result = await pipeline.run_turn(ctx, utterance)`, `record = pipeline.end_call(ctx, outcome)`
  (writes the `calls` row); a live process also runs `await pipeline.run_background()` (the
  once-a-second tick and the retry queue's worker).
- `pipeline.degradation.DegradationController`: the pipeline's degradation level. A dict-shaped
  control surface (`request(level, reason, region=None) -> dict`, `state() -> dict`) so alerts can
  ask through an ActionSink without importing this package.
- `pipeline.pools`, `pipeline.caches`, `pipeline.actions` (integration queue with retries),
  `pipeline.regions` (primary/secondary with failover), `pipeline.handoff` (human queue),
  `pipeline.context` (per-call conversation context): shared by the real and simulated modes.
- `pipeline.simulation`: scenarios (YAML in `pipeline/scenarios/`), simulated engines and the
  `Simulation` driver (virtual or wall clock, `on_tick(now)` hooks every simulated second);
  `run_on_virtual_clock` drives asyncio code (the turn runner) on a VirtualClock. docs/pipeline.md
  has the design.
- `pipeline.media` and `pipeline.real`: the real engines (WebRTC edge, Whisper, sklearn intents,
  OpenAI-compatible LLM client/server, HTTP connectors, espeak-ng), built separately.
- `pipeline.work`: an engine whose work does not run inside its stage's call (a decode begun at the
  caller's first pause, a lookup made inside the response stage, a reply synthesised while it is
  streamed) notes when it ran, `note_work(stage, start, end)`; the runner draws the stage's span
  over the notes. A streamed reply's speaker rides on the same per-turn object (`TurnWork.reply`).
"""

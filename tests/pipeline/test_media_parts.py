"""The real-media parts one at a time: VAD segmentation, Whisper decoding, the intent classifier and
its dataset, the OpenAI-compatible LLM stand-in and client, the CRM stand-in and connectors, TTS."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from pipeline.engines import IntegrationAction, ResponseRequest
from pipeline.media.caller import synthesize_caller_speech
from pipeline.media.stt import drop_repeats
from pipeline.media.vad import SegmenterOptions, TurnEvent, UtteranceSegmenter
from pipeline.media.wer import corpus_wer, word_error_rate

pytestmark = pytest.mark.media


def _speech16(text: str) -> np.ndarray:
    return np.frombuffer(synthesize_caller_speech(text, rate=16000), dtype=np.int16).astype(np.float32) / 32768.0


def _feed(seg: UtteranceSegmenter, audio: np.ndarray, chunk: int = 320) -> list:
    events = []
    for i in range(0, len(audio), chunk):
        events += seg.push(audio[i : i + chunk])
    return events


def test_segmenter_cuts_two_utterances_separated_by_silence():
    silence = np.zeros(16000, dtype=np.float32)
    a, b = _speech16("where is my order"), _speech16("what time do you close")
    events = _feed(UtteranceSegmenter(), np.concatenate([silence[:8000], a, silence, b, silence]))
    ended = [e for e in events if e.kind == TurnEvent.UTTERANCE_ENDED]
    assert len(ended) == 2
    for e, src in zip(ended, (a, b)):
        assert abs(len(e.audio) - len(src)) < 0.4 * 16000  # the utterance, not the silence around it
    # a PAUSE precedes each end of turn and carries the very audio the turn ends with (prefetch key)
    pauses = [e for e in events if e.kind == TurnEvent.PAUSE]
    assert any(p.audio is ended[0].audio for p in pauses)


def test_segmenter_ignores_silence_and_cuts_over_long_speech():
    seg = UtteranceSegmenter(SegmenterOptions(max_utterance_s=1.0))
    assert _feed(seg, np.zeros(32000, dtype=np.float32)) == []
    events = _feed(seg, _speech16("i bought a jacket and a pair of shoes last month and neither of them fit me"))
    assert any(e.kind == TurnEvent.UTTERANCE_TOO_LONG for e in events)


def test_whisper_transcribes_a_sentence_and_prefetch_is_reused():
    from pipeline.engines import Utterance
    from pipeline.media.stt import WhisperSpeechToText, float_to_pcm16

    stt = WhisperSpeechToText()
    pcm = float_to_pcm16(_speech16("please cancel my order"))

    async def go():
        stt.prefetch(pcm)
        return await stt.transcribe(Utterance("c", 1, audio=pcm))

    transcript = asyncio.run(go())
    assert word_error_rate("please cancel my order", transcript.text) <= 0.25
    assert 0.0 < transcript.confidence <= 1.0 and transcript.audio_s > 1.0
    assert stt.prefetch_hits == 1 and stt.decodes == 1
    assert stt.last_decoded.real_time_factor > 0


def test_tight_window_is_padded_with_the_log_mel_of_silence_and_decodes_with_beams():
    from pipeline.media.stt import WhisperDecoder

    decoder = WhisperDecoder("tight")
    audio = np.frombuffer(synthesize_caller_speech("where is my order", rate=16000), dtype=np.int16).astype(np.float32) / 32768.0
    window = decoder.window_features(audio)
    assert window.shape == (80, 1000)  # the 10 s minimum window
    # what Whisper was trained on: the spectrogram of the audio followed by digital silence
    silent = decoder.model.feature_extractor(np.concatenate([audio, np.zeros(16000 * 10 - len(audio), np.float32)]))
    tail = slice(len(audio) // 160 + 5, 990)  # clear of the STFT's overlap with the speech
    np.testing.assert_allclose(window[:, tail], silent[:, tail], atol=1e-4)
    assert decoder.beam_size == 5 and WhisperDecoder("full").beam_size == 1
    assert word_error_rate("where is my order", decoder.decode(audio).text) == 0.0
    with pytest.raises(ValueError, match="beam_size"):
        WhisperDecoder("tight", beam_size=0)


def test_edge_resampling_to_16khz_filters_what_16khz_cannot_carry():
    """The edge turns 48 kHz frames into Whisper's 16 kHz with libswresample (a windowed-sinc low-pass),
    not by keeping every third sample: speech band kept, tones above 8 kHz removed rather than folded
    back into the speech band as aliases."""
    import av

    from pipeline.media.tracks import frame_to_mono16k

    def gain_db(freq: float) -> float:
        x = (0.5 * np.sin(2 * np.pi * freq * np.arange(48000) / 48000) * 32767).astype(np.int16)
        resampler, out = av.AudioResampler(format="s16", layout="mono", rate=16000), []
        for i in range(0, len(x), 960):  # 20 ms frames, as they arrive from the caller
            frame = av.AudioFrame(format="s16", layout="mono", samples=960)
            frame.planes[0].update(x[i : i + 960].tobytes())
            frame.sample_rate = 48000
            out.append(frame_to_mono16k(resampler, frame))
        y = np.concatenate(out)[1600:-1600].astype(np.float64) / 32768.0
        return 20 * np.log10(max(np.sqrt(np.mean(y * y)) / (0.5 / np.sqrt(2)), 1e-9))

    for freq in (300, 1000, 3000, 6000):
        assert abs(gain_db(freq)) < 1.0, freq
    for freq in (9000, 12000, 15000):  # decimation would fold these to 7, 4 and 1 kHz at full level
        assert gain_db(freq) < -40.0, freq


def test_repeated_trailing_sentences_are_dropped():
    assert drop_repeats("Please cancel my order. Please cancel my order. Please cancel") == "Please cancel my order."
    assert drop_repeats("Where is it? Thanks.") == "Where is it? Thanks."


def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("the status of my order", "The status of my order!") == 0.0
    assert word_error_rate("the status of my order", "must have the son my order") == pytest.approx(4 / 5)
    assert corpus_wer([("a b c d", "a b c d"), ("a b", "a")]) == pytest.approx(1 / 6)


def test_intent_dataset_is_several_hundred_varied_utterances():
    from pipeline.real.intent_classifier import load_dataset

    ds = load_dataset()
    assert len(ds.texts) >= 300 and len(set(ds.texts)) == len(ds.texts)
    assert {"order_status", "return_request", "billing", "store_hours", "product_question", "talk_to_human", "out_of_scope",
            "cancel_order", "greeting", "goodbye"} <= set(ds.intents)
    assert all(t == t.lower() for t in ds.texts)


def test_fitted_intent_model_is_cached_on_disk_and_reloaded(tmp_path):
    from pipeline.real.intent_classifier import load_dataset, load_or_train

    dataset = load_dataset()
    trained = load_or_train(dataset, tmp_path)
    files = list(tmp_path.glob("intent-model-*.pkl"))
    assert len(files) == 1 and dataset.digest in files[0].name
    reloaded = load_or_train(dataset, tmp_path)
    assert reloaded is not trained
    texts = ["where is my order", "i want a refund", "are you open on sunday"]
    assert list(reloaded.predict(texts)) == list(trained.predict(texts))


def test_intent_classifier_generalises_and_falls_back_when_unsure():
    from pipeline.real.intent_classifier import SklearnIntentClassifier, cross_validated_accuracy

    assert cross_validated_accuracy() >= 0.75  # held-out utterances, 5 folds
    clf = SklearnIntentClassifier()
    # recogniser-style slips still land on the right intent
    assert clf.predict("What time does the sort close on Sunday?").intent == "store_hours"
    assert clf.predict("I want to return a pair and choose.").intent == "return_request"
    assert clf.predict("Can you tell me must have the son my order please?").intent == "order_status"
    off_topic = clf.predict("play some jazz music in the kitchen")
    assert off_topic.fallback and off_topic.intent == "fallback"


@pytest.fixture(scope="module")
def services():
    from pipeline.real.services import LocalServices

    s = LocalServices().start()
    yield s
    s.close()


def test_llm_stand_in_speaks_the_openai_chat_protocol_with_streaming(services):
    body = {"model": "any", "stream": True, "messages": [
        {"role": "system", "content": 'intent: order_status\nfacts: {"orders":{"order_id":"NW1","order_state":"shipped","eta":"Friday"}}'},
        {"role": "user", "content": "where is my order"}]}
    with httpx.Client(base_url=services.llm_url, timeout=10) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = [ln[6:] for ln in resp.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(x) for x in lines[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == "Your order NW1 is shipped. It should arrive on Friday."
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 5
        plain = client.post("/v1/chat/completions", json={**body, "stream": False}).json()
        assert plain["choices"][0]["message"]["content"] == text
        assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422


def test_llm_client_measures_time_to_first_token_and_reports_outages(services):
    from pipeline.engines import EngineError
    from pipeline.real.llm_client import OpenAIChatEngine

    async def go():
        engine = OpenAIChatEngine(services.llm_url)
        reply = await engine.generate(ResponseRequest("c", "product_question", "do you have the blue running jacket"))
        services.llm_app.state.error_rate = 1.0
        try:
            with pytest.raises(EngineError) as err:
                await engine.generate(ResponseRequest("c", "greeting", "hi"))
        finally:
            services.llm_app.state.error_rate = 0.0
        await engine.aclose()
        return reply, err.value

    reply, err = asyncio.run(go())
    assert "blue running jacket" in reply.text and "89" in reply.text
    assert 0 < reply.ttft_s < 5 and reply.completion_tokens > 3
    assert err.kind == "unavailable" and err.retryable


def test_connectors_reach_the_crm_stand_in_and_actions_are_idempotent(services):
    from pipeline.real.connectors import http_connectors

    async def go():
        connectors, client = http_connectors(services.integrations_url)
        lookup = await connectors["orders"].execute(IntegrationAction("orders", "order_status", "c", {"customer_id": "cust-1"}))
        again = await connectors["orders"].execute(IntegrationAction("orders", "order_status", "c", {"customer_id": "cust-1"}))
        action = IntegrationAction("orders", "create_return", "c", {"customer_id": "cust-1"}, idempotency_key="c:1:create_return")
        first = await connectors["orders"].execute(action)
        retry = await connectors["orders"].execute(action)
        unknown = await connectors["crm"].execute(IntegrationAction("crm", "launch_rocket", "c"))
        await client.aclose()
        return lookup, again, first, retry, unknown

    lookup, again, first, retry, unknown = asyncio.run(go())
    assert lookup.ok and lookup.data == again.data and lookup.data["order_id"].startswith("NW")
    assert first.ok and retry.data == first.data
    assert services.integration_app.state.actions_applied[("orders", "create_return")] == 1
    assert not unknown.ok and unknown.status == 404


def test_espeak_reply_is_48khz_speech():
    from pipeline.media.tts import EspeakTextToSpeech

    reply = asyncio.run(EspeakTextToSpeech().synthesize("Your order shipped yesterday. It arrives Thursday."))
    assert reply.sample_rate == 48_000
    pcm = np.frombuffer(reply.audio, dtype=np.int16)
    assert 1.5 < reply.duration_s < 6 and len(pcm) == int(round(reply.duration_s * 48_000))
    assert np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.02  # audible, not silence



def _endpoint_offline(audio: np.ndarray, policy) -> list:
    """The agent's endpointing without the network: the segmenter over the audio and, at each pause,
    the speculative decode, the classifier and the judgement, applied before more audio arrives (here
    the decode is synchronous; in a call it races the silence). Returns (end event, silence waited
    in ms) per turn."""
    from pipeline.media.endpoint import COMPLETE, INCOMPLETE, final_pitch_ratio, judge_pause
    from pipeline.media.stt import WhisperDecoder
    from pipeline.real.intent_classifier import SklearnIntentClassifier

    decoder, nlu = WhisperDecoder("tight"), SklearnIntentClassifier(threshold=0.40)
    seg = UtteranceSegmenter()
    turns: list = []
    complete_after_ms = None  # this pause ends the turn once this much silence has passed
    for i in range(0, len(audio), 320):
        for ev in seg.push(audio[i : i + 320]):
            if ev.kind == TurnEvent.UTTERANCE_ENDED:
                turns.append((ev, (seg.position - ev.speech_end_sample) / 16.0))
            elif ev.kind == TurnEvent.PAUSE:
                decoded = decoder.decode(ev.audio)
                intent = asyncio.run(nlu.classify(decoded.text))
                verdict = judge_pause(decoded.text, decoded.audio_s, intent, policy, final_pitch_ratio(ev.audio))
                if verdict == INCOMPLETE:
                    seg.hold_pause(policy.incomplete_silence_ms)
                elif verdict == COMPLETE:
                    complete_after_ms = policy.complete_silence_ms
        if not seg.paused:
            complete_after_ms = None
        elif complete_after_ms is not None and seg.silence_ms >= complete_after_ms:
            waited = seg.silence_ms
            turns.append((seg.end_turn_now(), waited))
            complete_after_ms = None
    return turns


def test_undecided_words_are_judged_by_the_voice():
    from pipeline.engines import IntentResult
    from pipeline.media.endpoint import COMPLETE, INCOMPLETE, UNSURE, EndpointPolicy, judge_pause

    # "...the status of," heard as a half-plausible request the classifier places with low confidence
    half = IntentResult("order_status", 0.42)
    assert judge_pause("I want to check my status on.", 1.6, half, pitch_ratio=0.945) == INCOMPLETE  # level voice
    assert judge_pause("I want to check my status on.", 1.6, half, pitch_ratio=0.75) == UNSURE  # falling: default silence
    assert judge_pause("I want to check my status on.", 1.6, half, pitch_ratio=None) == UNSURE  # no voice to read
    assert judge_pause("Hi.", 0.4, IntentResult("greeting", 0.96), pitch_ratio=1.08) == INCOMPLETE  # too short to judge
    assert judge_pause("Where is my order?", 1.3, IntentResult("order_status", 0.97), pitch_ratio=0.8) == COMPLETE
    baseline = EndpointPolicy(adaptive=False)
    assert judge_pause("I want to check my status on.", 1.6, half, baseline, pitch_ratio=0.945) == UNSURE


def test_adaptive_endpointing_waits_out_a_mid_clause_pause_and_ends_a_complete_request_early():
    from pipeline.media.caller import synthesize_paused_speech
    from pipeline.media.endpoint import EndpointPolicy

    # a pause of 400 ms after a clause spoken with continuation intonation, then the rest
    paused = synthesize_paused_speech(["my credit card was charged twice,", "for the same order"], [0.4], rate=16000)
    paused = np.frombuffer(paused, dtype=np.int16).astype(np.float32) / 32768.0
    tail = np.zeros(16000, dtype=np.float32)
    adaptive = _endpoint_offline(np.concatenate([paused, tail]), EndpointPolicy())
    fixed = _endpoint_offline(np.concatenate([paused, tail]), EndpointPolicy(adaptive=False))
    assert len(adaptive) == 1, "the adaptive endpointer waited for the second clause"
    assert len(fixed) == 2, "the fixed 320 ms endpointing cut the caller off at the pause (the baseline)"
    assert len(adaptive[0][0].audio) > len(fixed[0][0].audio) + 0.4 * 16000

    # a complete request that ends on a falling pitch ends after the short silence, not the default
    whole = np.concatenate([_speech16("i want to return a pair of shoes"), tail])
    policy = EndpointPolicy()
    ended = _endpoint_offline(whole, policy)
    assert len(ended) == 1
    assert ended[0][1] < SegmenterOptions().end_silence_ms
    assert ended[0][1] >= policy.complete_silence_ms


def test_reply_speaker_speaks_clauses_as_tokens_arrive_and_stops_on_cancel():
    from pipeline.media.speaker import ReplySpeaker
    from pipeline.media.tracks import PcmPlayoutTrack
    from pipeline.media.tts import EspeakTextToSpeech

    tts = EspeakTextToSpeech()
    reply = "I've checked your order: it is on its way. I'll text you the tracking details."

    async def go():
        track = PcmPlayoutTrack()
        speaker = ReplySpeaker(track, tts)
        tokens = [w if i == 0 else " " + w for i, w in enumerate(reply.split(" "))]
        for i, tok in enumerate(tokens):
            speaker.feed(tok)
            if i == 4:  # "I've checked your order: it" - the first clause is cut and being spoken
                await asyncio.wait_for(speaker.first_clip_queued.wait(), 10)
                assert speaker.clauses == ["I've checked your order:"] and len(track._clips) == 1
        spoken = await speaker.spoken()
        assert speaker.clauses == ["I've checked your order:", "it is on its way.", "I'll text you the tracking details."]
        assert spoken.audio == b"".join(c.pcm for c in speaker.clips) and spoken.duration_s > 2.0
        assert [c.label for c in track._clips] == ["reply:0", "reply:1", "reply:2"]  # in order, queued to play

        # barge-in: this reply's clips are dropped, another's stay
        other = track.play(b"\x00\x00" * 4800, "other")
        assert speaker.cancel() == 3
        assert list(track._clips) == [other] and all(c.done.done() and c.done.result() is False for c in speaker.clips)
        speaker.feed("more")  # nothing more is spoken once cancelled
        assert speaker.clauses[-1] == "I'll text you the tracking details."

        # a cached answer's clauses come from the clause cache: no espeak run the second time
        hits = tts.clause_cache_hits
        again = ReplySpeaker(track, tts)
        again.feed(reply)
        await again.spoken()
        assert tts.clause_cache_hits == hits + 3

    asyncio.run(go())

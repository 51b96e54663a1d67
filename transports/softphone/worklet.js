// Capture worklet of the voicegraph softphone: microphone samples at the context's rate in,
// 20 ms frames of 16-bit PCM at the target rate (16 kHz) out, posted to the page.
// When the context already runs at the target rate this is a plain float -> int16 copy;
// otherwise each output sample is the mean of the input samples it covers (a box filter:
// cheap, and it keeps most aliasing out of speech when downsampling 48 kHz -> 16 kHz).
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const target = (options.processorOptions && options.processorOptions.targetRate) || 16000;
    this.step = target / sampleRate; // output samples owed per input sample
    this.frame = new Int16Array(Math.round(target * 0.02));
    this.filled = 0;
    this.owed = 0;
    this.sum = 0;
    this.count = 0;
    this.last = 0;
  }

  emit(value) {
    const s = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.frame.length) {
      const out = this.frame.buffer;
      this.frame = new Int16Array(this.frame.length);
      this.filled = 0;
      this.port.postMessage(out, [out]);
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      this.sum += channel[i];
      this.count++;
      this.owed += this.step;
      if (this.owed >= 1) {
        this.last = this.sum / this.count;
        this.sum = 0;
        this.count = 0;
        while (this.owed >= 1) {
          this.emit(this.last);
          this.owed -= 1;
        }
      }
    }
    return true;
  }
}

registerProcessor("vg-capture", CaptureProcessor);

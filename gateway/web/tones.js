// Sound and touch: a different tone and vibration for each answer, so a dispatcher who is not
// looking at the screen knows what happened. Never the success tone for a refusal or a wait.
const TONES = {
  // A child saved on the server: one short high beep.
  child: { beeps: [[0, 0.12, 880]], wave: "sine", vibrate: 60 },
  // A parent accepted: two rising beeps, a longer buzz.
  parent: { beeps: [[0, 0.1, 660], [0.14, 0.14, 990]], wave: "sine", vibrate: [120, 60, 120] },
  // The parent just became full: three rising beeps, a long pattern — look up, next sack.
  full: { beeps: [[0, 0.12, 660], [0.16, 0.12, 880], [0.32, 0.3, 1180]], wave: "sine", vibrate: [100, 50, 100, 50, 400] },
  // Refused: a low buzz.
  err: { beeps: [[0, 0.45, 220]], wave: "square", vibrate: [200, 80, 200] },
  // Kept on this phone to send later: two soft mid beeps.
  queued: { beeps: [[0, 0.08, 520], [0.16, 0.08, 520]], wave: "triangle", vibrate: [40, 60, 40] },
};
let audio;
export function tone(kind) {
  const k = TONES[kind] || TONES.err;
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    for (const [at, len, hz] of k.beeps) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = hz; o.type = k.wave;
      g.gain.value = 0.15; o.connect(g); g.connect(audio.destination);
      o.start(audio.currentTime + at); o.stop(audio.currentTime + at + len);
    }
  } catch { /* no audio */ }
  if (navigator.vibrate) navigator.vibrate(k.vibrate);
}

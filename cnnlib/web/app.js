// The page of `python cnn_eval.py --serve`: photos and a webcam sent to this server's
// POST /predict; every face boxed, with bars of its class probabilities. It loads
// nothing from anywhere but this server.
"use strict";

const COLOURS = ["#d62728", "#8c564b", "#9467bd", "#2ca02c", "#7f7f7f", "#17becf",
                 "#1f77b4", "#ff7f0e", "#bcbd22", "#e377c2"];
const FRAMES_PER_SECOND = 3;   // webcam frames sent, at most (one in flight at a time)
const HISTORY_SECONDS = 10;    // the live chart's window
let facts = null;              // GET /model

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadFacts() {
  try {
    const response = await fetch("/model");
    facts = await response.json();
    const input = facts.input;
    $("model").textContent = `Model ${facts.name}: ${facts.classes.join(", ")} ` +
      `(${input.image_size}x${input.image_size}, ${input.channels === 1 ? "grayscale" : "RGB"})`;
    legend();
  } catch (error) {
    $("model").textContent = "The model's facts could not be read: is the server running?";
  }
}

// POST the image bytes; resolves to the JSON answer, or throws an Error with its sentence.
async function predict(blob) {
  const response = await fetch("/predict", {method: "POST", body: blob,
                                            headers: {"Content-Type": blob.type || "application/octet-stream"}});
  let body = null;
  try { body = await response.json(); } catch (error) { /* a plain-text 413 of waitress */ }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `The server answered ${response.status}.`);
  }
  return body;
}

function bars(probabilities, predicted) {
  const list = element("div", "bars");
  for (const [name, value] of Object.entries(probabilities)) {
    const row = element("div", name === predicted ? "bar top" : "bar");
    row.append(element("span", "name", name));
    const track = element("span", "track");
    const fill = element("span", "fill");
    fill.style.width = `${(100 * value).toFixed(1)}%`;
    fill.style.display = "block";
    track.append(fill);
    row.append(track, element("span", "value", value.toFixed(2)));
    list.append(row);
  }
  return list;
}

// Boxes over an image or video shown at any size: positions in percent of the image.
function drawBoxes(overlay, answer) {
  overlay.replaceChildren();
  const {width, height} = answer.image;
  const boxes = answer.faces.length ? answer.faces.map((f) => [f.box, `${f.face} ${f.predicted} ${f.probability.toFixed(2)}`, ""])
    : [[{x: 0, y: 0, w: width, h: height}, `whole image: ${answer.whole.predicted} ${answer.whole.probability.toFixed(2)}`, " whole"]];
  for (const [box, label, extra] of boxes) {
    const node = element("div", "box" + extra);
    node.style.left = `${100 * box.x / width}%`;
    node.style.top = `${100 * box.y / height}%`;
    node.style.width = `${100 * box.w / width}%`;
    node.style.height = `${100 * box.h / height}%`;
    node.append(element("span", "label", label));
    overlay.append(node);
  }
}

function showResult(file, url, answer) {
  const card = element("div", "result");
  card.append(element("h3", "", file.name));
  const stage = element("div", "stage");
  const image = element("img");
  image.src = url;
  image.alt = file.name;
  const overlay = element("div", "overlay");
  stage.append(image, overlay);
  card.append(stage);
  drawBoxes(overlay, answer);
  const scored = answer.faces.length ? answer.faces : [{face: null, ...answer.whole}];
  for (const face of scored) {
    const block = element("div", "face");
    const title = element("div", "title");
    title.append(face.face ? `Face ${face.face}: ` : "Whole image: ",
                 element("span", "predicted", face.predicted),
                 ` (${face.probability.toFixed(2)})`);
    block.append(title, bars(face.probabilities, face.predicted));
    card.append(block);
  }
  card.append(element("p", "meta", `${answer.reason}; ${(1000 * answer.seconds).toFixed(0)} ms.`));
  $("results").prepend(card);
}

async function handleFiles(files) {
  $("status").textContent = "";
  for (const file of files) {
    const limit = facts && facts.limits ? facts.limits.max_body : Infinity;
    if (file.size > limit) {
      $("status").textContent = `${file.name} is larger than the server's limit of ${limit} bytes.`;
      continue;
    }
    try {
      const answer = await predict(file);
      showResult(file, URL.createObjectURL(file), answer);
    } catch (error) {
      $("status").textContent = `${file.name}: ${error.message}`;
    }
  }
}

function setUpDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => handleFiles([...event.target.files]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    handleFiles([...event.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
  });
}

// --- the webcam: frames at a few per second, the expression over the last seconds ---
const history = [];  // {t: seconds, p: {class: probability}} of the largest face (or whole)
let stream = null;

function legend() {
  const node = $("legend");
  node.replaceChildren();
  facts.classes.forEach((name, i) => {
    const item = element("span");
    const swatch = element("i");
    swatch.style.background = COLOURS[i % COLOURS.length];
    item.append(swatch, name);
    node.append(item);
  });
}

function drawChart() {
  const canvas = $("chart");
  const context = canvas.getContext("2d");
  const {width, height} = canvas;
  context.clearRect(0, 0, width, height);
  context.strokeStyle = "#ddd";
  for (const level of [0, 0.5, 1]) {
    const y = height - 10 - level * (height - 20);
    context.beginPath(); context.moveTo(0, y); context.lineTo(width, y); context.stroke();
  }
  if (!facts || history.length < 1) return;
  const now = performance.now() / 1000;
  facts.classes.forEach((name, i) => {
    context.strokeStyle = COLOURS[i % COLOURS.length];
    context.lineWidth = 2;
    context.beginPath();
    history.forEach((point, j) => {
      const x = width * (1 - (now - point.t) / HISTORY_SECONDS);
      const y = height - 10 - point.p[name] * (height - 20);
      if (j === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  });
}

async function sendFrame() {
  const video = $("video");
  if (!stream || !video.videoWidth) return;
  const canvas = element("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
  try {
    const answer = await predict(blob);
    drawBoxes($("live-overlay"), answer);
    const largest = answer.faces.length
      ? answer.faces.reduce((a, b) => (a.box.w * a.box.h >= b.box.w * b.box.h ? a : b))
      : answer.whole;
    $("live-label").textContent = answer.faces.length
      ? `${answer.faces.length} face(s); the largest: ${largest.predicted} (${largest.probability.toFixed(2)})`
      : "No face found: the whole frame is scored.";
    const now = performance.now() / 1000;
    history.push({t: now, p: largest.probabilities});
    while (history.length && now - history[0].t > HISTORY_SECONDS) history.shift();
  } catch (error) {
    $("live-label").textContent = error.message;
  }
}

async function frameLoop() {
  while (stream) {
    const started = performance.now();
    await sendFrame();
    const wait = 1000 / FRAMES_PER_SECOND - (performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
  }
}

function chartLoop() {
  drawChart();
  requestAnimationFrame(chartLoop);
}

async function toggleCamera() {
  const button = $("camera");
  if (stream) {
    stream.getTracks().forEach((track) => track.stop());
    stream = null;
    button.textContent = "Start the webcam";
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $("live-label").textContent = "This browser gives no webcam here (it allows it on localhost or https only).";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
  } catch (error) {
    $("live-label").textContent = `The webcam could not be opened: ${error.message}`;
    return;
  }
  $("video").srcObject = stream;
  button.textContent = "Stop the webcam";
  frameLoop();
}

setUpDrop();
$("camera").addEventListener("click", toggleCamera);
loadFacts();
requestAnimationFrame(chartLoop);
